"""The handler registry: one module per framework, imported only when a model needs it.

Each framework module defines `build(model: ModelConfig, path: str) -> FrameworkHandler`.
Adding a framework is one module here plus a line in `_MODULES` (and a rule in
`detection` if its files are recognisable).
"""
import importlib
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from inference.config import ConfigError, ModelConfig

_MODULES = {
    "tensorflow": "inference.frameworks.tensorflow",
    "keras": "inference.frameworks.keras",
    "pytorch": "inference.frameworks.pytorch",
    "sklearn": "inference.frameworks.sklearn",
    "onnx": "inference.frameworks.onnx",
    "xgboost": "inference.frameworks.xgboost",
    "huggingface": "inference.frameworks.huggingface",
    "tensorrt": "inference.frameworks.tensorrt",
    "custom": "inference.frameworks.custom",
}


class FrameworkHandler(NamedTuple):
    """A framework's Beam ModelHandler and how a decoded batch becomes its examples.

    handler: Beam's own handler for the framework (loading, device, forward pass).
    to_examples: turns the batch's model inputs (a stacked array or dict of arrays) into
      the per-example sequence `handler.run_inference` takes.
    forward: instead, `forward(model, inputs, inference_args)` runs the model on the
      batch's inputs as they are and returns outputs row-aligned with the batch (an
      array, or a dict of arrays). For frameworks whose `handler.run_inference` would only
      call the same function and wrap each row's output in a PredictionResult, for us to
      unwrap again (~1 us per record); `handler` then only loads the model.
    With neither, the handler takes the serialized records themselves (no decoding), as
    TensorFlow's Example signatures do.
    """
    handler: ModelHandler
    to_examples: Optional[Callable[[Any], Sequence[Any]]]
    forward: Optional[Callable[[Any, Any, Optional[Dict[str, Any]]], Any]] = None

    @property
    def decodes(self) -> bool:
        """Whether the model takes decoded inputs rather than the serialized records."""
        return self.to_examples is not None or self.forward is not None


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    """The FrameworkHandler for `model` (whose framework is resolved) at `path`."""
    if model.framework not in _MODULES:
        raise ConfigError(f"model {model.name!r}: no handler for framework "
                          f"{model.framework!r}; known: {sorted(_MODULES)}")
    module = importlib.import_module(_MODULES[model.framework])
    return module.build(model, path)


def import_object(path: str) -> Any:
    """`package.module.Name`, `package.module:Name` or `path/to/file.py:Name` (a module
    file, as TFX components take `module_file`; local or gs://) -> the object it names."""
    if ".py:" in path:
        return _from_module_file(*path.rsplit(":", 1))
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise ConfigError(f"{path!r} is not an import path like 'package.module.Name'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot import {path!r}: {e}") from e


def _from_module_file(file_path: str, attr: str) -> Any:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    try:
        with tf.io.gfile.GFile(file_path) as f:
            source = f.read()
    except tf.errors.OpError as e:
        raise ConfigError(f"cannot read module file {file_path!r}: {e}") from e
    namespace: Dict[str, Any] = {"__name__": f"user_module_{abs(hash(file_path))}",
                                 "__file__": file_path}
    exec(compile(source, file_path, "exec"), namespace)  # pylint: disable=exec-used
    if attr not in namespace:
        raise ConfigError(f"module file {file_path!r} defines no {attr!r}")
    return namespace[attr]


def numpy_rows(inputs: Union[np.ndarray, Mapping[str, np.ndarray]]) -> List[Any]:
    """A batch's model inputs as per-example items for a NumPy handler's `run_inference`
    (or a `forward`'s outputs as one output per example).

    A stacked [batch, width] array gives its rows; a dict layout {feature: [batch, width]}
    gives one {feature: row} dict per example.
    """
    if isinstance(inputs, Mapping):
        return [dict(zip(inputs, row)) for row in zip(*inputs.values())]
    return list(inputs)


def stack_rows(batch: Sequence[Any]) -> Union[np.ndarray, Dict[str, np.ndarray]]:
    """The inverse of `numpy_rows`: per-example items back to one array, or a dict of them.

    (`np.array` of equal-shape rows is `np.stack` at half the cost; unequal shapes raise.)
    """
    if len(batch) and isinstance(batch[0], Mapping):
        return {name: np.array([example[name] for example in batch]) for name in batch[0]}
    return np.array(batch)
