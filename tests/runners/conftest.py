"""Shared pieces of the runner tests: the repository, subprocess environments, small data."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)  # the venv's bin: python, tfx, pip
TAXI_CSV = os.path.join(REPO, "template", "data", "taxi", "data.csv")
# Settings of the environment that would retarget the runners; tests set their own.
_CONFIG_VARIABLES = ("PIPELINE_NAME", "OUTPUT_DIR", "DATA_PATH", "FRAMEWORKS",
                     "TRAIN_NUM_STEPS", "EVAL_NUM_STEPS", "PYTHONPATH", "LOCAL_HOME",
                     "VERTEX_HOME", "INFERENCE_DEVICE")


def subprocess_env(home: str, **settings) -> dict:
    """The environment of a runner subprocess: the venv's tools first on PATH (the TFX CLI
    runs `pip freeze`), HOME in the test's folder (the CLI keeps pipelines under it), no
    inherited pipeline settings, then `settings`."""
    env = {k: v for k, v in os.environ.items()
           if k not in _CONFIG_VARIABLES and not k.startswith(("GOOGLE_CLOUD_", "DATAFLOW_",
                                                                "VERTEX_", "GCS_"))}
    env.update(PATH=BIN + os.pathsep + env.get("PATH", ""), HOME=home,
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in settings.items()})
    return env


def run(command, env, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    """Runs `command`; on failure the assertion shows the end of its output."""
    done = subprocess.run(command, env=env, cwd=cwd, timeout=timeout, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert done.returncode == 0, (f"{' '.join(command)} exited {done.returncode}:\n"
                                  f"{done.stdout[-6000:]}")
    return done


def write_sample(folder, rows: int) -> str:
    """The taxi CSV's header and first `rows` rows in `folder`/data.csv; returns `folder`."""
    os.makedirs(folder, exist_ok=True)
    with open(TAXI_CSV) as source, open(os.path.join(folder, "data.csv"), "w") as sample:
        for _, line in zip(range(rows + 1), source):
            sample.write(line)
    return str(folder)


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> str:
    return write_sample(tmp_path_factory.mktemp("taxi_sample"), 240)
