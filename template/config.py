"""What a user edits to make the pipeline theirs: names, paths, models, runner arguments.

Environment variables override the defaults, so the same file serves a local smoke run and
a production run.
"""
import os

from inference.config import InferenceConfig, InputSpec, ModelConfig
from template import features

PIPELINE_NAME = os.environ.get("PIPELINE_NAME", "taxi-bulk-inference")
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_PATH = os.environ.get("DATA_PATH", os.path.join(PROJECT_DIR, "template", "data", "taxi"))
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", os.path.join(PROJECT_DIR, "outputs"))
PIPELINE_ROOT = os.path.join(OUTPUT_DIR, "pipelines", PIPELINE_NAME)
METADATA_PATH = os.path.join(OUTPUT_DIR, "metadata", PIPELINE_NAME, "metadata.db")

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


def inference_config(framework: str) -> InferenceConfig:
    """The BulkInferrer configuration of one trained model.

    The Keras model parses raw tf.Examples itself (its signature applies the Transform
    graph), so it needs no input mapping: the TFX BulkInferrer path. The others take the
    float32 matrix of transformed features, in MODEL_FEATURES order.
    """
    if framework == "keras":
        return InferenceConfig(models=[ModelConfig(name=framework, max_batch_size=1024)])
    return InferenceConfig(models=[ModelConfig(
        name=framework,
        inputs=InputSpec(features=features.MODEL_FEATURES, dtype="float32"),
        max_batch_size=1024)])


# Beam arguments for the local run: the DirectRunner in this process.
LOCAL_BEAM_PIPELINE_ARGS = [
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
]
