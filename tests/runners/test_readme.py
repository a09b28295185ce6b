"""Every `bash` and `python` block of the README and of docs/, as printed.

Bash: each command in a fresh shell, the virtualenv not activated, HOME and the outputs in
the test's folder, a sample of the data and a few training steps (environment settings the
README documents). A block runs as one bash script (a `source` carries to its later
lines). Commands that talk to Google Cloud, `make test` (this suite), the copied project's
`make run`, the model servers' locks' re-resolution and the replay of a run's dead letters
are left out, each for the reason in SKIPPED; any other command runs.

Python: after the bash blocks (which include `make run` and `make run-text`, whose outputs
some blocks read), every block runs in one process (one import of TFX), each in a namespace
of its own (so a block that leans on an earlier one's names fails), from the repository root.
Cloud paths the blocks read or write are replaced by local stand-ins (STAND_INS: the
template's PyTorch model and transformed examples from the `make run` above, a small image
classifier, images and class names made here, an output folder); paths that a block only
names (an Importer's `source_uri`, a component's arguments) are left as printed. Blocks
that cannot run here are left out for the reason in SKIPPED_PYTHON.
"""
import glob
import gzip
import json
import os
import re
import subprocess
import sys

import pytest

from tests.runners.conftest import REPO, subprocess_env, write_sample

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
# Python blocks left out, by pattern, and why.
SKIPPED_PYTHON = {
    r"LocalDagRunner\(\)\.run\(pipeline\.create_image_pipeline": "runs a whole TFX pipeline "
                                                                  "(minutes); tests/pipeline/"
                                                                  "test_image_pipeline.py runs "
                                                                  "it on images and a classifier "
                                                                  "it builds",
    r"npz_linear|np\.savez\(\"linear\.npz": "a framework module, its registry line and a "
                                             "run that needs both: tests/inference/"
                                             "frameworks/test_adding_a_framework.py runs the "
                                             "three together",
}
# A shell where nothing of the project is on PATH.
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pages():
    """The README and every page under docs/, as (path relative to the repository, text)."""
    paths = ["README.md"] + sorted(
        os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "**", "*.md"),
                                                    recursive=True))
    for path in paths:
        with open(os.path.join(REPO, path)) as f:
            yield path, f.read()


def code_blocks(text: str, language: str):
    """The blocks of `language` in a Markdown text, dedented."""
    blocks = []
    for indent, block in re.findall(rf"^( *)```{language}\n(.*?)^ *```", text,
                                    re.MULTILINE | re.DOTALL):
        blocks.append("\n".join(line[len(indent):] for line in block.splitlines()))
    return blocks


def readme_blocks():
    """The bash blocks of the README and docs/, each a list of commands (continued lines
    joined)."""
    blocks = []
    for _, text in pages():
        for block in code_blocks(text, "bash"):
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
    """Runs every bash block; returns [(commands run, output)] and the skipped commands."""
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
    print("Commands left out:\n" + "\n".join(f"  {c}: {r}" for c, r in skipped.items()))
    return {"root": root, "results": results, "skipped": skipped}


# Runs the blocks given on stdin (JSON), each in a namespace of its own, marking where each
# block's output starts.
RUNNER = """
import json, sys
for i, code in enumerate(json.load(sys.stdin)):
    print(f"=== block {i}", flush=True)
    exec(compile(code, f"<block {i}>", "exec"), {"__name__": "__main__"})
    sys.stdout.flush()
"""


def _stand_ins(root, outputs: str, page: str) -> dict:
    """Cloud paths the Python blocks read or write -> local files (see the docstring)."""
    taxi = os.path.join(outputs, "pipelines", "taxi-bulk-inference")
    model = sorted(glob.glob(os.path.join(taxi, "Trainer.pytorch", "model", "*",
                                          "Format-Serving", "model.pt")))[-1]
    eval_split = sorted(glob.glob(os.path.join(taxi, "Transform", "transformed_examples", "*",
                                               "Split-eval")))[-1]
    images = root / "stand_ins" / "images"
    return {"gs://bucket/model.pt": model,
            "gs://bucket/examples/*.gz": os.path.join(eval_split, "*.gz"),
            "gs://bucket/models/resnet50.pt": str(root / "stand_ins" / "classifier.pt"),
            "gs://bucket/models/imagenet_classes.txt": str(root / "stand_ins" / "classes.txt"),
            "gs://bucket/images/*.jpg": str(images / "*.jpg"),
            "gs://bucket/out": str(root / "out" / page.replace("/", "_"))}


def _write_image_stand_ins(folder):
    """Three JPEG images and a file named .jpg that is not one; a TorchScript classifier of
    NCHW images into 6 classes and their names."""
    import numpy as np
    import torch
    from PIL import Image
    os.makedirs(folder / "images")
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.fromarray(np.full((40 + i, 50, 3), colour, np.uint8)).save(
            folder / "images" / f"image-{i}.jpg", "JPEG")
    (folder / "images" / "notes.jpg").write_text("not an image\n")
    torch.manual_seed(0)
    torch.jit.script(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                         torch.nn.Linear(3, 6))).save(str(folder / "classifier.pt"))
    (folder / "classes.txt").write_text("".join(f"class {i}\n" for i in range(6)))


def _skip_python(code: str):
    return next((reason for pattern, reason in SKIPPED_PYTHON.items()
                 if re.search(pattern, code)), None)


@pytest.fixture(scope="module")
def python_ran(ran):
    """Runs every Python block after the bash blocks: {page: [output of each block run]},
    and the blocks left out."""
    root, outputs = ran["root"], str(ran["root"] / "outputs")
    _write_image_stand_ins(root / "stand_ins")
    env = subprocess_env(str(root / "home"), OUTPUT_DIR=outputs, PYTHONPATH=REPO)
    blocks, skipped = [], {}
    for page, text in pages():
        for code in code_blocks(text, "python"):
            reason = _skip_python(code)
            if reason:
                skipped[f"{page}: {code.splitlines()[-1]}"] = reason
                continue
            for cloud, local in _stand_ins(root, outputs, page).items():
                code = code.replace(cloud, local)
            blocks.append((page, code))
    done = subprocess.run([sys.executable, "-c", RUNNER],
                          input=json.dumps([code for _, code in blocks]), cwd=REPO, env=env,
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=1200, check=False)
    printed = re.split(r"^=== block \d+\n", done.stdout, flags=re.MULTILINE)
    assert done.returncode == 0, (f"{blocks[len(printed) - 2][0]}: a Python block exited "
                                  f"{done.returncode}:\n{done.stdout[-5000:]}")
    assert len(printed) == len(blocks) + 1, done.stdout
    results = {}
    for (page, _), out in zip(blocks, printed[1:]):
        results.setdefault(page, []).append(out)
    print("Python blocks left out:\n" + "\n".join(f"  {c}: {r}" for c, r in skipped.items()))
    return {"root": root, "results": results, "skipped": skipped}


def _count_records(pattern: str) -> int:
    import tensorflow as tf
    files = tf.io.gfile.glob(pattern)
    assert files, pattern
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_every_python_block_runs_or_says_why_not(python_ran):
    assert set(python_ran["skipped"].values()) == set(SKIPPED_PYTHON.values())
    assert {"README.md", "docs/engine.md", "docs/images-and-text.md", "docs/running.md",
            "docs/drop-in.md", "docs/frameworks.md", "docs/remote.md", "docs/replay.md",
            "docs/multi-model.md", "docs/drift.md", "docs/batch.md"} <= set(
        python_ran["results"])


def test_the_engine_example_scores_every_record_of_the_template_model(python_ran):
    printed = python_ran["results"]["docs/engine.md"][0].strip().splitlines()[-1]
    eval_examples = _stand_ins(python_ran["root"], str(python_ran["root"] / "outputs"),
                               "docs/engine.md")["gs://bucket/examples/*.gz"]
    assert int(printed) == _count_records(eval_examples) > 0
    out = python_ran["root"] / "out" / "docs_engine.md"
    assert _count_records(str(out / "prediction_logs*")) == int(printed)


def test_the_batch_example_writes_a_row_per_record_of_the_template_model(python_ran):
    printed = python_ran["results"]["docs/batch.md"][0].strip().splitlines()[-1]
    eval_examples = _stand_ins(python_ran["root"], str(python_ran["root"] / "outputs"),
                               "docs/batch.md")["gs://bucket/examples/*.gz"]
    assert int(printed) == _count_records(eval_examples) > 0
    rows = glob.glob(str(python_ran["root"] / "out" / "docs_batch.md" / "scored" / "taxi"
                         / "rows-*.json.gz"))
    assert sum(1 for path in rows for _ in gzip.open(path)) == int(printed)


def test_the_image_example_labels_every_image_and_dead_letters_the_one_that_is_not(python_ran):
    out = python_ran["root"] / "out" / "docs_images-and-text.md"
    assert _count_records(str(out / "prediction_logs*")) == 3
    assert _count_records(str(out / "failures*")) == 1


def test_reading_the_outputs_reads_one_run(python_ran):
    reading, = python_ran["results"]["docs/running.md"]
    assert re.search(r"\[[\d.e+\- \[\]]+\]", reading), reading
    rows = python_ran["results"]["docs/images-and-text.md"][-1]
    assert int(rows.split()[0]) > 0 and "embedding" in rows, rows


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
