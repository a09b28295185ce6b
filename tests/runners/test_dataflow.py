"""The BulkInferrer executor builds a valid Dataflow job from template/config.py's Dataflow
arguments, offline.

Two offline ways through Beam's real DataflowRunner:
- `--template_location`: Beam builds the whole job request (environment, worker pool,
  options), stages the pipeline proto and the `--setup_file` sdist, and writes the job
  JSON instead of submitting it. Staging is local here: `--dataflow_endpoint=http://
  localhost:1` is Beam's local-service mode, in which the options validator accepts a
  local `--staging_location` (nothing is sent to the endpoint when making a template;
  the only trace in the job is the worker pool's `kind: local`).
- `--dry_run=True`: Beam builds and validates the job and the portable pipeline, then
  returns a result without submitting anything, and without metrics or a job file.

Neither result has metrics: the executor sees the job was only built and records no
figures.
"""
import json
import os
import tarfile

import apache_beam as beam
import numpy as np
import pytest
import torch
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from components.bulk_inferrer import executor, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from template import config
from tests import helpers
from tests.runners.conftest import REPO

FEATURES = ["f0", "f1", "f2"]
IMAGE = "us-central1-docker.pkg.dev/test-project/tfx/bulk-inference:test"
GPU = "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"


@pytest.fixture
def cloud_env(monkeypatch, tmp_path):
    """template/config.py's settings for a test project (what a user exports)."""
    for name, value in {"GOOGLE_CLOUD_PROJECT": "test-project",
                        "GOOGLE_CLOUD_REGION": "us-central1", "GCS_BUCKET": "bucket",
                        "PIPELINE_IMAGE": IMAGE, "DATAFLOW_NUM_WORKERS": "2",
                        "DATAFLOW_MAX_NUM_WORKERS": "5",
                        "DATAFLOW_GPU_TYPE": "nvidia-tesla-t4"}.items():
        monkeypatch.setenv(name, value)
    for name in ("DATAFLOW_TEMP_LOCATION", "DATAFLOW_STAGING_LOCATION",
                 "DATAFLOW_SDK_CONTAINER_IMAGE", "DATAFLOW_MACHINE_TYPE",
                 "DATAFLOW_SETUP_FILE", "DATAFLOW_EXTRA_ARGS", "DATAFLOW_GPU_COUNT",
                 "DATAFLOW_GPU_MACHINE_TYPE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataflow_inputs")
    rows = np.random.RandomState(0).rand(20, 3).astype(np.float32)
    examples = helpers.examples_artifact(
        str(root / "examples"), {"eval": helpers.float_examples(rows, FEATURES)})
    model = helpers.model_artifact(str(root / "model"))
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)),
                   os.path.join(helpers.serving_dir(model), "model.pt"))
    return {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [model]}


def _properties():
    inference = InferenceConfig(models=[ModelConfig(
        name="pytorch", inputs=InputSpec(features=FEATURES), max_batch_size=64)])
    return {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
            spec.INFERENCE_CONFIG_KEY: inference.to_json()}


def _do(tmp_path, inputs, beam_args, make_beam_pipeline_fn=None):
    """Runs the executor, which builds the Dataflow job without running it."""
    outputs = {
        spec.INFERENCE_RESULT_KEY: [helpers.output_artifact(
            standard_artifacts.InferenceResult, str(tmp_path / "inference_result"))],
        spec.FAILURES_KEY: [helpers.output_artifact(
            spec.InferenceFailures, str(tmp_path / "failures"))],
    }
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=beam_args, tmp_dir=str(tmp_path / "executor_tmp"),
        unique_id="dataflow-test", make_beam_pipeline_fn=make_beam_pipeline_fn)
    executor.Executor(context).Do(inputs, outputs, _properties())
    assert not outputs[spec.INFERENCE_RESULT_KEY][0].has_custom_property("predictions")


def _names(pipeline_proto) -> list:
    return [t.unique_name for t in pipeline_proto.components.transforms.values()]


def _assert_inference_graph(pipeline_proto):
    names = _names(pipeline_proto)
    assert any(n.startswith("ReadData[eval]") for n in names), names
    assert any(n.startswith("Infer[eval]") and n.endswith("BeamML_RunInference")
               for n in names), names
    assert any(n.startswith("WritePredictionLogs[pytorch]") for n in names), names
    assert any(n.startswith("WriteFailures") for n in names), names
    images = {beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
              for env in pipeline_proto.components.environments.values()
              if env.urn == "beam:env:docker:v1"}
    assert images == {IMAGE}


def test_template_job_holds_the_inference_graph_and_the_requested_options(
        cloud_env, inputs):
    tmp_path = cloud_env
    staging = tmp_path / "staging"
    staging.mkdir()
    job_file = tmp_path / "job.json"
    args = (config.dataflow_beam_pipeline_args(setup_file=os.path.join(REPO, "setup.py"))
            + config.dataflow_gpu_args()
            + [f"--staging_location={staging}", f"--template_location={job_file}",
               "--dataflow_endpoint=http://localhost:1", "--no_auth",
               "--job_name=bulk-inference-test"])
    _do(tmp_path, inputs, args)

    job = json.loads(job_file.read_text())
    assert job["name"] == "bulk-inference-test" and job["type"] == "JOB_TYPE_BATCH"
    environment = job["environment"]
    (pool,) = environment["workerPools"]
    assert pool["machineType"] == "n1-standard-4"
    assert pool["numWorkers"] == 2
    assert pool["autoscalingSettings"]["maxNumWorkers"] == 5
    assert pool["workerHarnessContainerImage"] == IMAGE
    assert "workflow.tar.gz" in [p["name"] for p in pool["packages"]]  # --setup_file
    assert environment["serviceOptions"] == [GPU]
    assert "no_use_multiple_sdk_containers" in environment["experiments"]
    assert "use_multiple_sdk_containers" not in environment["experiments"]
    assert environment["tempStoragePrefix"].startswith(
        "storage.googleapis.com/bucket/dataflow/tmp")
    options = environment["sdkPipelineOptions"]["options"]
    assert options["project"] == "test-project" and options["region"] == "us-central1"
    assert options["sdk_container_image"] == IMAGE
    assert options["sdk_location"] == "container"
    assert options["setup_file"] == os.path.join(REPO, "setup.py")
    assert options["dataflow_service_options"] == [GPU]
    assert options["pipelineUrl"] == os.path.join(str(staging), "pipeline.pb")

    pipeline_proto = beam_runner_api_pb2.Pipeline.FromString(
        (staging / "pipeline.pb").read_bytes())
    _assert_inference_graph(pipeline_proto)
    with tarfile.open(staging / "workflow.tar.gz") as sdist:
        members = {m.name.split("/", 1)[-1] for m in sdist.getmembers()}
    assert {"components/bulk_inferrer/executor.py", "inference/engine/handler.py",
            "inference/streaming.py", "template/config.py"} <= members


def _dry_run_args(tmp_path):
    return (config.dataflow_beam_pipeline_args(setup_file=os.path.join(REPO, "setup.py"))
            + config.dataflow_gpu_args()
            + ["--dry_run=True", "--no_auth", "--temp_location=gs://bucket/tmp",
               f"--dataflow_job_file={tmp_path / 'job.json'}"])


def test_dry_run_builds_and_validates_the_job(cloud_env, inputs):
    """The DataflowRunner (kept to look at it) builds the job under --dry_run."""
    tmp_path = cloud_env
    runner = DataflowRunner()
    args = _dry_run_args(tmp_path)
    _do(tmp_path, inputs, args,
        make_beam_pipeline_fn=lambda: beam.Pipeline(runner=runner, argv=args))
    job = json.loads(runner.job.json())
    assert job["type"] == "JOB_TYPE_BATCH" and job["name"]
    options = runner.job.options.get_all_options()
    assert options["project"] == "test-project" and options["region"] == "us-central1"
    assert options["machine_type"] == "n1-standard-4"
    assert options["dataflow_service_options"] == [GPU]
    _assert_inference_graph(runner.proto_pipeline)
    # A dry run submits nothing, and writes no job file either.
    assert not (tmp_path / "job.json").exists()




def test_project_is_shipped_as_a_package_only_to_workers_of_another_image(
        cloud_env, monkeypatch):
    """The pipeline image has the project installed: no `--setup_file` (a pip install per
    worker at start, of the same code). Another worker image gets it from setup.py."""
    assert not [a for a in config.dataflow_beam_pipeline_args()
                if a.startswith("--setup_file")]
    monkeypatch.setenv("DATAFLOW_SDK_CONTAINER_IMAGE", "apache/beam_python3.10_sdk:2.74.0")
    assert "--setup_file=/pipeline/setup.py" in config.dataflow_beam_pipeline_args()
    monkeypatch.setenv("DATAFLOW_SETUP_FILE", "none")
    assert not [a for a in config.dataflow_beam_pipeline_args()
                if a.startswith("--setup_file")]
    monkeypatch.delenv("DATAFLOW_SDK_CONTAINER_IMAGE")
    monkeypatch.setenv("DATAFLOW_SETUP_FILE", "/src/setup.py")
    assert "--setup_file=/src/setup.py" in config.dataflow_beam_pipeline_args()
