"""scikit-learn: joblib / pickle files (trusted ones only) or skops files, via Beam's
SklearnModelHandlerNumpy.

options:
  method: the estimator method to call, "predict" (default) or "predict_proba"
    ("predict_log_proba", "decision_function" and "transform" also work).
  trusted: must be True to load .joblib / .pkl / .pickle files (see `_check_trusted`).
  trusted_types: for .skops files, the type names `skops.io.load` may build beyond its
    safe defaults (see `skops.io.get_untrusted_types`).
"""
import functools
import posixpath

from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference import sklearn_inference

from inference.config import ConfigError, ModelConfig
from inference.frameworks import FrameworkHandler

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
_PICKLE_FORMATS = {
    ".joblib": sklearn_inference.ModelFileType.JOBLIB,
    ".pkl": sklearn_inference.ModelFileType.PICKLE,
    ".pickle": sklearn_inference.ModelFileType.PICKLE,
}


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    options = model.options
    method = options.get("method", "predict")
    if method not in METHODS:
        raise ConfigError(f"model {model.name!r}: options.method={method!r}: choose one of "
                          f"{METHODS}")
    if model.inputs.layout != "stacked":
        raise ConfigError(f"model {model.name!r}: scikit-learn estimators take one array; "
                          f"use inputs.layout='stacked'")
    forward = functools.partial(_call, method=method)
    # No GPU in scikit-learn: `device` does not apply.
    suffix = posixpath.splitext(path)[1].lower()
    if suffix == ".skops":
        return FrameworkHandler(_skops_handler(model, path), None, forward)
    _check_trusted(model, path)
    handler = sklearn_inference.SklearnModelHandlerNumpy(
        model_uri=path,
        model_file_type=_PICKLE_FORMATS.get(suffix, sklearn_inference.ModelFileType.PICKLE))
    return FrameworkHandler(handler, None, forward)


def _call(model, inputs, inference_args=None, *, method: str):
    return getattr(model, method)(inputs, **(inference_args or {}))


def _check_trusted(model: ModelConfig, path: str):
    if model.options.get("trusted") is not True:
        raise ConfigError(
            f"model {model.name!r}: {path!r} is a pickle (joblib) file, and loading a pickle "
            f"runs whatever code it holds. Load it only if you trust where it came from, by "
            f"setting options={{'trusted': True}} on the model; or save the model in a safe "
            f"format instead: ONNX (skl2onnx.to_onnx) or skops (skops.io.dump).")


def _skops_handler(model: ModelConfig, path: str):
    try:
        import skops.io  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"model {model.name!r}: {path!r} is a skops file; install the "
                          f"`skops` package to load it (pip install skops)") from e
    return SkopsModelHandlerNumpy(model_uri=path,
                                  trusted_types=model.options.get("trusted_types"))


class SkopsModelHandlerNumpy(sklearn_inference.SklearnModelHandlerNumpy):
    """Beam's handler knows pickle and joblib only: this thin subclass loads with skops."""

    def __init__(self, model_uri: str, *, trusted_types=None, **kwargs):
        super().__init__(model_uri=model_uri, **kwargs)
        self._trusted_types = list(trusted_types or [])

    def load_model(self):
        import skops.io
        with FileSystems.open(self._model_uri, "rb") as f:
            return skops.io.loads(f.read(), trusted=self._trusted_types)
