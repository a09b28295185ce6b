"""Keras / TensorFlow models on dense tensors, via Beam's TFModelHandlerNumpy.

Two formats:
  - a `.keras` (or legacy `.h5`) file: Beam's handler loads it with keras' load_model and
    calls the model on the stacked batch (a dict layout feeds a dict of named inputs);
  - a SavedModel folder (e.g. `model.export(dir)`): its serving signature is called.
    options: signature_name (default "serving_default"), tag (default: the SavedModel's).
    A stacked layout feeds the signature's single input; a dict layout feeds each feature
    to the signature input of the same name. Outputs keep the signature's output names.
"""
import dataclasses
import functools
import posixpath
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference import tensorflow_inference

from inference.config import ConfigError, ModelConfig
from inference.frameworks import FrameworkHandler

DEFAULT_SIGNATURE = "serving_default"
_KERAS_FILES = (".keras", ".h5")


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    """Beam's handler loads the model; the forward calls it on the stacked batch (or the
    dict of named arrays), as Beam's inference function would after stacking rows back."""
    device = "/GPU:0" if model.device == "GPU" else "/CPU:0"
    if posixpath.splitext(path)[1].lower() in _KERAS_FILES:
        return FrameworkHandler(KerasFileHandler(path), None,
                                functools.partial(_call_keras_model, device=device))
    # A subclass of Beam's handler: Keras 3's load_model refuses SavedModel folders.
    handler = SavedModelSignatureHandler(
        path, signature_name=_one(model, "signature_name") or DEFAULT_SIGNATURE,
        tag=_one(model, "tag"), features=model.inputs.features, layout=model.inputs.layout)
    return FrameworkHandler(handler, None, functools.partial(_call_signature, device=device))


@dataclasses.dataclass
class Signature:
    """A loaded SavedModel's serving function; `module` keeps its variables alive.

    (A plain class: Beam's shared-model cache keeps a weak reference to what load_model
    returns, which tuples do not allow.)
    """
    module: Any
    function: Any
    inputs: Mapping[str, tf.TensorSpec]


class KerasFileHandler(tensorflow_inference.TFModelHandlerNumpy):
    """Beam's TFModelHandlerNumpy loading `.keras` / `.h5` files with whichever Keras saved
    them.

    Beam loads with tf.keras, which is Keras 2 (tf_keras) once anything in the process has
    set TF_USE_LEGACY_KERAS (tensorflow_transform and transformers do on import), and
    Keras 2 cannot read Keras 3 files. So Keras 3 loads first, then Keras 2.
    """

    def load_model(self):
        import keras  # pylint: disable=import-outside-toplevel
        try:
            return keras.saving.load_model(self._model_uri)
        except Exception as keras3_error:  # pylint: disable=broad-except
            try:
                import tf_keras  # pylint: disable=import-outside-toplevel
                return tf_keras.models.load_model(self._model_uri)
            except Exception:  # pylint: disable=broad-except
                raise keras3_error  # pylint: disable=raise-missing-from


class SavedModelSignatureHandler(tensorflow_inference.TFModelHandlerNumpy):
    """Beam's TFModelHandlerNumpy loading with tf.saved_model.load.

    Beam loads with tf.keras.models.load_model, which Keras 3 (tf.keras in TF >= 2.16)
    refuses for SavedModel folders, and load_model_args cannot change the loader: so this
    thin subclass overrides load_model only, and checks the signature against the inputs.
    """

    def __init__(self, model_uri: str, *, signature_name: str, tag=None, features=(),
                 layout: str = "stacked", **kwargs):
        super().__init__(model_uri, **kwargs)
        self._signature_name = signature_name
        self._tag = tag
        self._features = list(features)
        self._layout = layout

    def load_model(self) -> Signature:
        module = tf.saved_model.load(self._model_uri, tags=self._tag)
        if self._signature_name not in module.signatures:
            raise ConfigError(f"{self._model_uri!r} has no signature {self._signature_name!r}"
                              f"; it has {sorted(module.signatures)}: set "
                              f"options.signature_name")
        function = module.signatures[self._signature_name]
        inputs = dict(function.structured_input_signature[1])
        if self._layout == "dict":
            unknown = sorted(set(self._features) - set(inputs))
            if unknown:
                raise ConfigError(f"features {unknown} are not inputs of signature "
                                  f"{self._signature_name!r}, whose inputs are "
                                  f"{sorted(inputs)}: name the features after them")
        elif len(inputs) != 1:
            raise ConfigError(f"signature {self._signature_name!r} takes {sorted(inputs)}: "
                              f"use inputs.layout='dict' with features named after them")
        return Signature(module, function, inputs)


def _call_keras_model(model, inputs, inference_args=None, *, device: str):
    with tf.device(device):
        return _outputs(model(inputs, **(inference_args or {})))


def _call_signature(signature: Signature, inputs, inference_args=None, *, device: str):
    if not isinstance(inputs, Mapping):
        inputs = {next(iter(signature.inputs)): inputs}
    feeds = {name: tf.convert_to_tensor(_as_dtype(value, signature.inputs[name].dtype))
             for name, value in inputs.items()}
    with tf.device(device):
        return _outputs(signature.function(**feeds, **(inference_args or {})))


def _outputs(outputs):
    """The batch's outputs in NumPy, row-aligned: a dict by output name, an array, or,
    for a list of outputs, one tuple per record (Beam's default would pair the list's
    items with records)."""
    if isinstance(outputs, Mapping):
        return {str(name): _numpy(value) for name, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return list(zip(*[_numpy(value) for value in outputs]))
    return _numpy(outputs)


def _as_dtype(value: np.ndarray, dtype: tf.DType) -> np.ndarray:
    return value if dtype == tf.string else value.astype(dtype.as_numpy_dtype, copy=False)


def _numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _one(model: ModelConfig, option: str):
    """An option given as a string or a list of at most one (as TFX's ModelSpec has it)."""
    value = model.options.get(option)
    if isinstance(value, (list, tuple)):
        if len(value) > 1:
            raise ConfigError(f"model {model.name!r}: options.{option}={value!r}: a Keras "
                              f"model runs one; give one")
        value = value[0] if value else None
    return value or None
