"""scikit-learn: joblib / pickle files (trusted ones only; loaded by Beam's handler) or
skops files.

options:
  method: the estimator method to call, "predict" (default) or "predict_proba"
    ("predict_log_proba", "decision_function" and "transform" also work).
  trusted: must be True to load .joblib / .pkl / .pickle files (see `inference.frameworks.trust`).
  trusted_types: for .skops files, the type names `skops.io.loads` may build beyond its
    safe defaults (see `skops.io.get_untrusted_types`).
"""
import importlib.util
import posixpath

from apache_beam.io.filesystems import FileSystems

from inference.config import ConfigError, ModelConfig
from inference.data import columns
from inference.frameworks import Framework

FRAMEWORK = Framework(suffixes=(".joblib", ".pkl", ".pickle", ".skops"))
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
_JOBLIB = (".joblib",)


def check(path: str, spec: ModelConfig):
    method = spec.options.get("method", "predict")
    if method not in METHODS:
        raise ConfigError(f"model {spec.name!r}: options.method={method!r}: choose one of "
                          f"{METHODS}")
    if spec.inputs.layout != "stacked":
        raise ConfigError(f"model {spec.name!r}: scikit-learn estimators take one array; "
                          f"use inputs.layout='stacked'")
    if _is_skops(path) and importlib.util.find_spec("skops") is None:
        raise ConfigError(f"model {spec.name!r}: {path!r} is a skops file; install the "
                          f"`skops` package to load it (pip install skops)")


def load(path: str, spec: ModelConfig):
    if _is_skops(path):
        import skops.io
        with FileSystems.open(path, "rb") as f:
            return skops.io.loads(f.read(), trusted=list(spec.options.get("trusted_types")
                                                         or []))
    # A pickle: the trust gate let it through only for a trusted model.
    from apache_beam.ml.inference import sklearn_inference
    file_type = (sklearn_inference.ModelFileType.JOBLIB if path.endswith(_JOBLIB)
                 else sklearn_inference.ModelFileType.PICKLE)
    return sklearn_inference.SklearnModelHandlerNumpy(
        model_uri=path, model_file_type=file_type).load_model()


def predict(model, inputs, spec: ModelConfig):
    method = getattr(model, spec.options.get("method", "predict"))
    return columns.from_batch(method(inputs), len(inputs), spec.output_names)


def _is_skops(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() == ".skops"
