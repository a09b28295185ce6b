"""XGBoost models saved as JSON or UBJ (no pickle), via Beam's XGBoostModelHandlerNumpy.

options:
  model_class: "classifier" (default, XGBClassifier), "regressor" (XGBRegressor) or
    "booster" (the raw xgboost.Booster).
  method: "predict" (default) or "predict_proba" (classifiers).
"""
import functools

import xgboost
from apache_beam.ml.inference import xgboost_inference

from inference.config import ConfigError, ModelConfig
from inference.frameworks import FrameworkHandler

MODEL_CLASSES = {
    "classifier": xgboost.XGBClassifier,
    "regressor": xgboost.XGBRegressor,
    "booster": xgboost.Booster,
}
METHODS = ("predict", "predict_proba")


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    options = model.options
    kind = options.get("model_class", "classifier")
    method = options.get("method", "predict")
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"model {model.name!r}: options.model_class={kind!r}: choose one "
                          f"of {sorted(MODEL_CLASSES)}")
    if method not in METHODS or (method == "predict_proba" and kind != "classifier"):
        raise ConfigError(f"model {model.name!r}: options.method={method!r}: choose "
                          f"'predict', or 'predict_proba' with model_class='classifier'")
    if model.inputs.layout != "stacked":
        raise ConfigError(f"model {model.name!r}: XGBoost models take one array; use "
                          f"inputs.layout='stacked'")
    model_class = MODEL_CLASSES[kind]
    if model.device == "GPU":
        model_class = (functools.partial(model_class, params={"device": "cuda"})
                       if kind == "booster" else functools.partial(model_class, device="cuda"))
    handler = xgboost_inference.XGBoostModelHandlerNumpy(model_class=model_class,
                                                         model_state=path)
    return FrameworkHandler(handler, None, functools.partial(_predict, method=method))


def _predict(model, features, inference_args=None, *, method: str):
    """One predict call on the whole batch (Beam's default calls predict once per element,
    each a 2-D array; our elements are single rows)."""
    if isinstance(model, xgboost.Booster):
        return model.predict(xgboost.DMatrix(features), **(inference_args or {}))
    return getattr(model, method)(features, **(inference_args or {}))
