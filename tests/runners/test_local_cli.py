"""The real `tfx` CLI (engine local) and `python -m template.copy`, end to end.

One pipeline run serves both: the project is scaffolded with `python -m template.copy`
into a temporary folder, then `tfx pipeline create --engine=local` records the copy's
local_runner.py and `tfx run create --engine=local` runs it (the CLI runs
`python local_runner.py`), with the copy first on PYTHONPATH, on a few hundred rows of the
taxi data and a few training steps. The run must be COMPLETE in ML Metadata. The copied
runners are the repository's byte for byte, so this is the repository's runner under the
CLI (a second full run would double the test time).
"""
import filecmp
import json
import os

import pytest
from ml_metadata.proto import metadata_store_pb2

from components import run_summary
from tests.runners.conftest import BIN, REPO, run, subprocess_env

PIPELINE = "copied-pipeline"
COMPONENTS = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
              "Transform", "Trainer.pytorch", "BulkInferrer.pytorch"}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, sample_data):
    root = tmp_path_factory.mktemp("cli")
    project = root / "project"
    env = subprocess_env(
        str(root / "home"), LOCAL_HOME=root / "tfx_local", PYTHONPATH=project,
        OUTPUT_DIR=root / "outputs", DATA_PATH=sample_data, FRAMEWORKS="pytorch",
        TRAIN_NUM_STEPS=5, EVAL_NUM_STEPS=2)
    copied = run([os.path.join(BIN, "python"), "-m", "template.copy",
                  "--destination", str(project), "--pipeline_name", PIPELINE], env)
    created = run([os.path.join(BIN, "tfx"), "pipeline", "create", "--engine=local",
                   f"--pipeline_path={project / 'local_runner.py'}"], env, cwd=project)
    ran = run([os.path.join(BIN, "tfx"), "run", "create", "--engine=local",
               f"--pipeline_name={PIPELINE}"], env, cwd=project)
    return {"root": root, "project": project, "copied": copied, "created": created,
            "ran": ran, "metadata": root / "outputs" / "metadata" / PIPELINE / "metadata.db"}


def test_template_copy_scaffolds_a_project_with_the_pipeline_name(cli_run):
    project = cli_run["project"]
    for name in ("pipeline.py", "local_runner.py", "vertex_runner.py", "setup.py",
                 "requirements.in", "requirements.lock", "Makefile", "Dockerfile",
                 "template/config.py", "template/data/taxi/data.csv",
                 "components/bulk_inferrer/executor.py", "inference/engine/handler.py",
                 "inference/streaming.py"):
        assert (project / name).is_file(), name
    for name in ("tests", "outputs", ".venv", ".git"):
        assert not (project / name).exists(), name
    # The runners are the repository's own, byte for byte: the CLI run below is theirs.
    for name in ("local_runner.py", "vertex_runner.py", "pipeline.py"):
        assert filecmp.cmp(project / name, os.path.join(REPO, name), shallow=False), name
    config = (project / "template" / "config.py").read_text()
    assert f'os.environ.get("PIPELINE_NAME", "{PIPELINE}")' in config
    assert PIPELINE in cli_run["copied"].stdout


def test_pipeline_create_records_the_pipeline_in_the_cli_home(cli_run):
    assert f'Pipeline "{PIPELINE}" created successfully.' in cli_run["created"].stdout
    # The patched LocalDagRunner.run ran nothing, so no summary was printed.
    assert "Components:" not in cli_run["created"].stdout
    with open(cli_run["root"] / "tfx_local" / PIPELINE / "pipeline_args.json") as f:
        args = json.load(f)
    assert args["pipeline_name"] == PIPELINE
    assert args["pipeline_dsl_path"] == str(cli_run["project"] / "local_runner.py")
    assert args["pipeline_root"] == str(
        cli_run["root"] / "outputs" / "pipelines" / PIPELINE)


def test_run_create_completes_every_component_in_ml_metadata(cli_run):
    store = run_summary.open_store(str(cli_run["metadata"]))
    pipelines = [c.name for c in store.get_contexts_by_type("pipeline")]
    assert pipelines == [PIPELINE]
    (run_context,) = store.get_contexts_by_type("pipeline_run")
    states = {}
    for execution in store.get_executions_by_context(run_context.id):
        nodes = [c.name.split(".", 1)[-1] for c in
                 store.get_contexts_by_execution(execution.id) if c.type == "node"]
        states[nodes[0]] = metadata_store_pb2.Execution.State.Name(
            execution.last_known_state)
    assert states == {component: "COMPLETE" for component in COMPONENTS}
    # The code that ran is the copy's: its outputs live under the copy's settings.
    results = [a for a in store.get_artifacts()
               if "BulkInferrer.pytorch/inference_result" in a.uri]
    assert results and all(a.uri.startswith(str(cli_run["root"] / "outputs"))
                           for a in results)
    assert results[0].custom_properties["predictions"].int_value > 0


def test_run_create_prints_the_summary(cli_run):
    out = cli_run["ran"].stdout
    assert f"Pipeline '{PIPELINE}', run" in out
    assert "BulkInferrer.pytorch" in out and "COMPLETE" in out
    assert str(cli_run["metadata"]) in out
