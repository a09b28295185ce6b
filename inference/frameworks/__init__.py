"""Frameworks: how a model's files load and how the model runs on a batch.

A framework is a module here with two functions:

    load(path: str, spec: ModelConfig) -> model
    predict(model, inputs, spec: ModelConfig) -> Mapping[str, np.ndarray]

`inputs` is a batch's model inputs as the model's InputSpec shapes them (one [batch, width]
array, or a dict of them for layout="dict"); `predict` returns batch-major arrays, row i
for input row i (see `inference.data.columns`). Optionally:

    check(path, spec) -> None       configuration checks before Beam starts (ConfigError)
    takes_records(spec) -> bool     True: `inputs` are the serialized records themselves
    batch_size(spec) -> int         the records of every batch, in place of the model's
                                    min and max (a remote model's batch is the requests it
                                    may have in flight)
    SAFE_CONTENT = (...)            pickle-bearing contents its loader reads without running
                                    code (see `inference.frameworks.trust`)

`predict` raises `PartialPredictions` when some rows failed on their own (a remote
request that failed after its retries): those rows fail, the others keep their outputs.

`BeamHandler` adapts any Beam `ModelHandler` (a custom one, a Hugging Face pipeline,
TensorRT, tfx_bsl's, a remote endpoint) to `load` + `predict`. Adding a framework is a
module here, a line in `_MODULES`, and a detection rule in `inference.frameworks.detection` when its
files are recognisable.
"""
import importlib
import types
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler

from inference.data import columns
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
    "remote": "inference.frameworks.remote",
}


def get(name: str) -> types.ModuleType:
    """The framework module called `name`."""
    if name not in _MODULES:
        raise ConfigError(f"no framework {name!r}; known: {sorted(_MODULES)}")
    return importlib.import_module(_MODULES[name])


def takes_records(framework: types.ModuleType, spec: ModelConfig) -> bool:
    """Whether the framework's `predict` takes the serialized records, undecoded."""
    rule = getattr(framework, "takes_records", None)
    return bool(rule(spec)) if rule is not None else False


def batch_size(framework: types.ModuleType, spec: ModelConfig) -> Optional[int]:
    """The records of every batch when the framework sets them, else None."""
    rule = getattr(framework, "batch_size", None)
    return rule(spec) if rule is not None else None


def check(framework: types.ModuleType, path: str, spec: ModelConfig):
    """The framework's configuration checks, if it has any."""
    checker = getattr(framework, "check", None)
    if checker is not None:
        checker(path, spec)


# --- Any Beam ModelHandler as a framework ------------------------------------------------

class BeamHandler(NamedTuple):
    """A loaded Beam ModelHandler: the handler and what its `load_model` returned."""
    handler: ModelHandler
    model: Any

    @classmethod
    def load(cls, handler: ModelHandler) -> "BeamHandler":
        return cls(handler, handler.load_model())

    def predict(self, examples: Sequence[Any], output_names: Sequence[str] = (),
                inference_args: Optional[Dict[str, Any]] = None) -> Dict[str, np.ndarray]:
        """The handler's `run_inference` on per-example inputs, as columns."""
        results = list(self.handler.run_inference(examples, self.model, inference_args))
        if len(results) != len(examples):
            raise ValueError(f"the handler returned {len(results)} results for "
                             f"{len(examples)} examples")
        return columns.from_examples([getattr(r, "inference", r) for r in results],
                                     output_names)


def numpy_rows(inputs: Any) -> list:
    """A batch's model inputs as per-example items for a Beam NumPy handler: the rows of a
    stacked array, or one {feature: row} dict per example for a dict layout."""
    if isinstance(inputs, Mapping):
        return [dict(zip(inputs, row)) for row in zip(*inputs.values())]
    return list(inputs)


# --- Import paths in the configuration -----------------------------------------------------

def import_object(path: str, option: str = "") -> Any:
    """`package.module.Name`, `package.module:Name` or `path/to/file.py:Name` (a module
    file, as TFX components take `module_file`; local or gs://) -> the object it names.

    option: the configuration option that holds `path`, named in errors.
    """
    what = f"{option}={path!r}" if option else repr(path)
    if ".py:" in path:
        return _from_module_file(*path.rsplit(":", 1), what=what)
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise ConfigError(f"{what} is not an import path like 'package.module.Name'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except Exception as e:  # an import runs the module's code: any error can come out
        raise ConfigError(f"cannot import {what}: {type(e).__name__}: {e}") from e


_MODULE_FILES: Dict[str, Dict[str, Any]] = {}  # path -> the namespace it ran in


def _from_module_file(file_path: str, attr: str, what: str) -> Any:
    namespace = _MODULE_FILES.get(file_path)
    if namespace is None:
        try:
            with FileSystems.open(file_path) as f:
                source = f.read().decode("utf-8")
        except Exception as e:  # pylint: disable=broad-except
            raise ConfigError(f"cannot read the module file of {what}: {e}") from e
        namespace = {"__name__": f"user_module_{abs(hash(file_path))}",
                     "__file__": file_path}
        try:
            exec(compile(source, file_path, "exec"), namespace)  # pylint: disable=exec-used
        except Exception as e:  # the user's module raised while it ran
            raise ConfigError(f"the module file of {what} failed to run: "
                              f"{type(e).__name__}: {e}") from e
        _MODULE_FILES[file_path] = namespace
    if attr not in namespace:
        raise ConfigError(f"the module file of {what} defines no {attr!r}")
    return namespace[attr]

