"""The local run's console: the full logs (Python's and C++'s, from the process's file
descriptors) go to a file, the console keeps its own lines and the progress lines, and
FULL_LOGS=1 keeps everything on the console. Each case runs in a process of its own, as
`python local_runner.py` does (its whole output is what a person sees)."""
import os
import subprocess
import sys

from tests.runners.conftest import REPO

SCRIPT = """
import logging, os, sys
from components import console
out = console.start(sys.argv[1], "demo")
assert "tensorflow" not in sys.modules  # the capture starts before TensorFlow's import
print("a python line")
os.write(2, b"a C++ line\\n")
out.watch(os.path.join(sys.argv[1], "metadata.db"), "demo")
logging.getLogger("inference.observe.progress").info("progress: model 'm': 5 records done")
from absl import logging as absl_logging  # TFX logs through absl
absl_logging.warning("a TFX warning")
out.print("a console line")
"""


def _run(tmp_path, **env):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO,
                          env={**os.environ, **env}, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120, check=True)
    return done.stdout


def test_full_logs_go_to_a_file_and_the_console_keeps_its_lines(tmp_path):
    out = _run(tmp_path, FULL_LOGS="")
    lines = out.splitlines()
    assert lines[0].startswith("Full log: ") and "FULL_LOGS=1" in lines[0]
    assert lines[1].endswith("] " + "    progress: model 'm': 5 records done")
    assert lines[2:] == ["a console line"]
    (log,) = os.listdir(tmp_path / "logs")
    assert log.startswith("demo-") and log.endswith(".log")
    full = (tmp_path / "logs" / log).read_text()
    for line in ("a python line", "a C++ line", "a TFX warning"):
        assert line in full


def test_full_logs_variable_keeps_everything_on_the_console(tmp_path):
    out = _run(tmp_path, FULL_LOGS="1")
    for line in ("a python line", "a C++ line", "a TFX warning", "5 records done",
                 "a console line"):
        assert line in out
    assert "Full log" not in out and not (tmp_path / "logs").exists()
