"""Every command of the README's `bash` blocks, exactly as printed, in a fresh shell: the
virtualenv not activated, HOME and the outputs in the test's folder, a sample of the data
and a few training steps (environment settings the README documents).

A block runs as one bash script (a `source` carries to its later lines). Commands that
talk to Google Cloud, `make test` (this suite), the copied project's `make run`, the
model servers' locks' re-resolution and the replay of a run's dead letters are left out, each for the reason in SKIPPED; any other
command runs.
"""
import json
import os
import re

import pytest

from tests.runners.conftest import REPO, write_sample

# Commands left out, by pattern, and why.
SKIPPED = {
    r"^make test\b": "runs this test suite",
    r"^export GOOGLE_CLOUD_PROJECT=|^export PIPELINE_IMAGE=": "settings for the Google Cloud "
                                                               "commands beside them",
    r"^gcloud ": "builds the image on Cloud Build, or copies data to Cloud Storage",
    r"^tfx run create --engine=vertex": "submits the pipeline to Vertex AI",
    r"--runner=DataflowRunner": "starts a streaming Dataflow job",
    r"^cd ~/my-pipeline && make run": "builds the copy's own environment (minutes); "
                                      "test_local_cli.py runs a copied project's pipeline",
    r"uv pip compile .*tests/inference/remote/requirements-": "re-resolves the model servers' "
                                                              "locks on PyPI and rewrites them "
                                                              "(tracked files)",
    r"^\.venv/bin/python -m inference\.replay": "needs a run's dead letters and its "
                                                "configuration; tests/inference/remote/"
                                                "test_replay.py runs it after a server "
                                                "killed mid-run",
    r"PUBSUB_EMULATOR_HOST|-m inference\.streaming": "talks to the Pub/Sub emulator, or streams "
                                                     "until stopped: tests/inference/"
                                                     "test_streaming_pubsub.py runs these blocks",
}
# A shell where nothing of the project is on PATH.
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_blocks():
    """The README's bash blocks, each a list of commands (continued lines joined)."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    blocks = []
    for block in re.findall(r"^ *```bash\n(.*?)^ *```", text, re.MULTILINE | re.DOTALL):
        commands, current = [], ""
        for line in block.splitlines():
            line = line.strip()
            current += line
            if line.endswith("\\"):
                current += "\n"
                continue
            if current and not current.startswith("#"):
                commands.append(current)
            current = ""
        blocks.append(commands)
    return blocks


def _skip_reason(command: str):
    return next((reason for pattern, reason in SKIPPED.items()
                 if re.search(pattern, command)), None)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Runs every block; returns [(commands run, output)] and the skipped commands."""
    import subprocess
    root = tmp_path_factory.mktemp("readme")
    env = {"PATH": FRESH_PATH, "HOME": str(root / "home"), "LANG": "C.UTF-8",
           "OUTPUT_DIR": str(root / "outputs"), "DATA_PATH": write_sample(root / "data", 240),
           "TRAIN_NUM_STEPS": "5", "EVAL_NUM_STEPS": "2", "PYTHONWARNINGS": "ignore"}
    os.makedirs(env["HOME"])
    results, skipped = [], {}
    for commands in readme_blocks():
        kept = []
        for command in commands:
            reason = _skip_reason(command)
            if reason:
                skipped[command] = reason
            else:
                kept.append(command)
        if not kept:
            continue
        done = subprocess.run(["bash", "-e", "-c", "\n".join(kept)], cwd=REPO, env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=900, check=False)
        assert done.returncode == 0, f"{kept} exited {done.returncode}:\n{done.stdout[-5000:]}"
        results.append((kept, done.stdout))
    print("README commands left out:\n" + "\n".join(f"  {c}: {r}" for c, r in skipped.items()))
    return {"root": root, "results": results, "skipped": skipped}


def _output(ran, command: str) -> str:
    """The output of the block that ran a command starting with `command`."""
    return next(out for kept, out in ran["results"] if any(c.startswith(command)
                                                           for c in kept))


def test_only_google_cloud_and_slow_commands_are_left_out(ran):
    assert set(ran["skipped"].values()) == set(SKIPPED.values())
    run = [c for kept, _ in ran["results"] for c in kept]
    assert any(c.startswith("make run") for c in run)
    assert "tfx pipeline create --engine=vertex --pipeline_path=vertex_runner.py" in " ".join(run)
    assert "tfx run create --engine=local --pipeline_name=taxi-bulk-inference" in " ".join(run)


def test_make_run_prints_a_short_console_ending_with_summary_reports_and_log(ran):
    out = _output(ran, "make run")
    lines = out.rstrip("\n").split("\n")
    assert len(lines) < 100, out
    assert "Inference (per model):" in out and "INFO:" not in out
    reports = re.findall(r"^    report: (\S+)$", out, re.MULTILINE)
    assert len(reports) == 2 and all(os.path.isfile(r) for r in reports)  # keras, pytorch
    assert re.search(r"^\[ *[\d.]+s\] BulkInferrer.pytorch COMPLETE in [\d.]+ s -> .*"
                     r"inference_result/\d+", out, re.MULTILINE)
    log = re.fullmatch(r"Full log: (\S+)", lines[-1])
    assert log, lines[-1]
    log_path = os.path.join(REPO, log.group(1))
    with open(log_path) as f:
        full = f.read()
    assert "INFO:absl:Component Transform is running." in full and len(full) > 10 * len(out)


def test_vertex_commands_compile_without_an_activated_virtualenv(ran):
    compiled = [ran["root"] / "outputs" / "vertex" / "taxi-bulk-inference_pipeline.json",
                ran["root"] / "home" / "tfx" / "vertex" / "taxi-bulk-inference" /
                "pipeline.json"]
    for path in compiled:
        tasks = json.loads(path.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
        assert {"BulkInferrer.keras", "BulkInferrer.pytorch"} <= set(tasks)
    text = ran["root"] / "outputs" / "vertex" / "text-embeddings_pipeline.json"
    tasks = json.loads(text.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks) == {"CsvExampleGen", "PretrainedModel", "BulkInferrer.text",
                          "PredictionRows"}


def test_local_cli_commands_run_the_pipeline(ran):
    out = _output(ran, "tfx pipeline create --engine=local")
    assert 'Pipeline "taxi-bulk-inference" created successfully.' in out
    assert "Inference (per model):" in out


def test_template_copy_makes_a_project(ran):
    project = ran["root"] / "home" / "my-pipeline"
    assert (project / "local_runner.py").is_file() and (project / "system.py").is_file()
