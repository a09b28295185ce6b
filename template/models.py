"""The BulkInferrer configurations of the template: one per trained framework, and one
per multi-model pattern (A/B, keyed, sequence) over the PyTorch and scikit-learn models.

Each is an `inference.config.InferenceConfig`; edit them here to change what runs.
"""
from inference.config import InferenceConfig, InputSpec, ModelConfig
from template import config, features

# The frameworks the multi-model patterns combine; the pipeline trains them when a
# pattern is asked for.
PATTERN_FRAMEWORKS = ("pytorch", "sklearn")

# Per framework, how its model is called. The scikit-learn and XGBoost trainers save
# classifiers whose big-tipper probability is predict_proba's column 1; scikit-learn's
# joblib file is a pickle, loaded only because this pipeline trained it itself.
_OPTIONS = {
    "sklearn": {"method": "predict_proba", "trusted": True},
    "xgboost": {"method": "predict_proba"},
}


def model_config(framework: str, name: str = "", model_input="") -> ModelConfig:
    """One trained model of the template. Keras parses raw examples itself (TFX's
    BulkInferrer path); the others read the float32 matrix of transformed features."""
    name = name or framework
    model_input = model_input or f"Trainer.{framework}"
    if framework == "keras":
        return ModelConfig(name=name, model_input=model_input, max_batch_size=1024,
                           device=config.INFERENCE_DEVICE)
    return ModelConfig(
        name=name, model_input=model_input,
        inputs=InputSpec(features=features.MODEL_FEATURES, dtype="float32"),
        max_batch_size=1024, device=config.INFERENCE_DEVICE,
        options=dict(_OPTIONS.get(framework, {})))


def single(framework: str) -> InferenceConfig:
    return InferenceConfig(models=[model_config(framework)])


def ab() -> InferenceConfig:
    """A/B: a stable hash of each trip's record sends 50% to each model."""
    return InferenceConfig(models=[model_config(f) for f in PATTERN_FRAMEWORKS],
                           routing="ab", fractions=[0.5, 0.5])


def keyed() -> InferenceConfig:
    """Keyed: weekend trips (days 1 and 7) to scikit-learn, weekdays to PyTorch, with one
    model in memory at a time and records grouped by key to avoid reloading."""
    weekdays = [str(day) for day in range(2, 7)]
    pytorch, sklearn = (model_config(f) for f in PATTERN_FRAMEWORKS)
    pytorch.keys, sklearn.keys = weekdays, ["1", "7"]
    return InferenceConfig(models=[pytorch, sklearn], routing="keyed",
                           routing_feature="trip_start_day", max_models_per_worker_hint=1,
                           group_by_key=True)


def sequence() -> InferenceConfig:
    """Sequence: PyTorch scores each trip, then scikit-learn scores the record enriched
    with PyTorch's score (feature `pytorch_output_0`), so both travel downstream."""
    return InferenceConfig(models=[model_config(f) for f in PATTERN_FRAMEWORKS],
                           routing="sequence")


PATTERNS = {"ab": ab, "keyed": keyed, "sequence": sequence}
