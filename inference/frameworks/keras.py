"""Keras / TensorFlow models on dense tensors.

Two formats:
  - a `.keras` (or legacy `.h5`) file: loaded by Keras 3, or, for an `.h5` file Keras 3
    cannot read, by Keras 2 (tf_keras). The trust gate refuses files with Lambda layers
    unless the model is trusted (Keras 2 has no safe mode; Keras 3 loads them only out of
    its safe mode);
  - a SavedModel folder (e.g. `model.export(dir)`): its serving signature is called
    (tf.saved_model.load: a graph, no Python is deserialized).
    options: signature_name (default "serving_default"), tag (default: the SavedModel's).
    A stacked layout feeds the signature's single input; a dict layout feeds each feature
    to the signature input of the same name. Outputs keep the signature's output names.
"""
import dataclasses
import posixpath
from typing import Any, Mapping

import numpy as np

from inference.config import ConfigError, ModelConfig
from inference.data import columns
from inference.frameworks import Framework, trust

DEFAULT_SIGNATURE = "serving_default"
_KERAS_FILES = (".keras", ".h5")

# A SavedModel folder is a Keras model when the tensorflow framework, asked before it,
# found that its signature does not take serialized examples.
FRAMEWORK = Framework(suffixes=_KERAS_FILES, whole_folder=True,
                      folder=lambda folder, names: "saved_model.pb" in names)


@dataclasses.dataclass
class Signature:
    """A loaded SavedModel's serving function; `module` keeps its variables alive."""
    module: Any
    function: Any
    inputs: Mapping[str, Any]  # name -> tf.TensorSpec


def check(path: str, spec: ModelConfig):
    for option in ("signature_name", "tag"):
        _one(spec, option)


def load(path: str, spec: ModelConfig):
    if posixpath.splitext(path)[1].lower() in _KERAS_FILES:
        return _load_keras_file(path, spec)
    return _load_signature(path, spec)


def predict(model, inputs, spec: ModelConfig):
    import tensorflow as tf
    device = "/GPU:0" if spec.device == "GPU" else "/CPU:0"
    size = len(next(iter(inputs.values()))) if isinstance(inputs, Mapping) else len(inputs)
    with tf.device(device):
        if isinstance(model, Signature):
            outputs = _call_signature(model, inputs)
        else:
            outputs = model(inputs)
    return columns.from_batch(_numpy(outputs), size, spec.output_names)


def _load_keras_file(path: str, spec: ModelConfig):
    import keras
    try:
        return keras.saving.load_model(path, safe_mode=not trust.trusted(spec))
    except Exception as keras3_error:
        if not path.lower().endswith(".h5"):
            raise
        import tf_keras
        try:
            return tf_keras.models.load_model(path)
        except Exception:
            raise keras3_error from None


def _load_signature(path: str, spec: ModelConfig) -> Signature:
    import tensorflow as tf
    module = tf.saved_model.load(path, tags=_one(spec, "tag"))
    name = _one(spec, "signature_name") or DEFAULT_SIGNATURE
    if name not in module.signatures:
        raise ConfigError(f"{path!r} has no signature {name!r}; it has "
                          f"{sorted(module.signatures)}: set options.signature_name")
    function = module.signatures[name]
    inputs = dict(function.structured_input_signature[1])
    if spec.inputs.layout == "dict":
        unknown = sorted(set(spec.inputs.features) - set(inputs))
        if unknown:
            raise ConfigError(f"features {unknown} are not inputs of signature {name!r}, "
                              f"whose inputs are {sorted(inputs)}: name the features after "
                              f"them")
    elif len(inputs) != 1:
        raise ConfigError(f"signature {name!r} takes {sorted(inputs)}: use "
                          f"inputs.layout='dict' with features named after them")
    return Signature(module, function, inputs)


def _call_signature(signature: Signature, inputs):
    import tensorflow as tf
    if not isinstance(inputs, Mapping):
        inputs = {next(iter(signature.inputs)): inputs}
    feeds = {name: tf.convert_to_tensor(_as_dtype(value, signature.inputs[name].dtype))
             for name, value in inputs.items()}
    return signature.function(**feeds)


def _numpy(outputs):
    if isinstance(outputs, Mapping):
        return {str(name): _numpy(value) for name, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return [_numpy(value) for value in outputs]
    return outputs.numpy() if hasattr(outputs, "numpy") else np.asarray(outputs)


def _as_dtype(value: np.ndarray, dtype) -> np.ndarray:
    """`value` as the tf.DType `dtype` takes it (strings as they are)."""
    return value if dtype.name == "string" else value.astype(dtype.as_numpy_dtype, copy=False)


def _one(spec: ModelConfig, option: str):
    """An option given as a string or a list of at most one (as TFX's ModelSpec has it)."""
    value = spec.options.get(option)
    if isinstance(value, (list, tuple)):
        if len(value) > 1:
            raise ConfigError(f"model {spec.name!r}: options.{option}={value!r}: a Keras "
                              f"model runs one; give one")
        value = value[0] if value else None
    return value or None
