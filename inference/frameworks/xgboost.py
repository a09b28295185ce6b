"""XGBoost models saved as JSON or UBJ (no pickle), loaded by Beam's handler.

options:
  model_class: "classifier" (default, XGBClassifier), "regressor" (XGBRegressor) or
    "booster" (the raw xgboost.Booster).
  method: "predict" (default) or "predict_proba" (classifiers).
"""
import functools

from inference.config import ConfigError, ModelConfig
from inference.data import columns
from inference.frameworks import Framework, file_head


def _is_model_json(path: str) -> bool:
    """From the file's head: XGBoost's JSON models start with their "learner" object."""
    head = file_head(path, 256)
    return head.lstrip()[:1] == b"{" and b'"learner"' in head


# JSON files are XGBoost's when their content says so (detection sniffs them).
FRAMEWORK = Framework(suffixes=(".ubj",), reads=(".json",), sniff=_is_model_json)
# options.model_class -> the xgboost class it names.
MODEL_CLASSES = {
    "classifier": "XGBClassifier",
    "regressor": "XGBRegressor",
    "booster": "Booster",
}
METHODS = ("predict", "predict_proba")


def check(path: str, spec: ModelConfig):
    kind = spec.options.get("model_class", "classifier")
    method = spec.options.get("method", "predict")
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"model {spec.name!r}: options.model_class={kind!r}: choose one "
                          f"of {sorted(MODEL_CLASSES)}")
    if method not in METHODS or (method == "predict_proba" and kind != "classifier"):
        raise ConfigError(f"model {spec.name!r}: options.method={method!r}: choose "
                          f"'predict', or 'predict_proba' with model_class='classifier'")
    if spec.inputs.layout != "stacked":
        raise ConfigError(f"model {spec.name!r}: XGBoost models take one array; use "
                          f"inputs.layout='stacked'")


def load(path: str, spec: ModelConfig):
    import xgboost
    from apache_beam.ml.inference import xgboost_inference
    kind = spec.options.get("model_class", "classifier")
    model_class = getattr(xgboost, MODEL_CLASSES[kind])
    if spec.device == "GPU":
        model_class = (functools.partial(model_class, params={"device": "cuda"})
                       if kind == "booster" else functools.partial(model_class, device="cuda"))
    return xgboost_inference.XGBoostModelHandlerNumpy(model_class=model_class,
                                                      model_state=path).load_model()


def predict(model, inputs, spec: ModelConfig):
    """One call on the whole batch (Beam's default calls predict once per element)."""
    import xgboost
    if isinstance(model, xgboost.Booster):
        outputs = model.predict(xgboost.DMatrix(inputs))
    else:
        outputs = getattr(model, spec.options.get("method", "predict"))(inputs)
    return columns.from_batch(outputs, len(inputs), spec.output_names)
