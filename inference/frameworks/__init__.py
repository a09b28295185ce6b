"""Frameworks: how a model's files load and how the model runs on a batch.

A framework is a module with a declaration and two functions:

    FRAMEWORK = Framework(...)      what it is: the files it recognises, what it loads
                                    safely, ... (see `Framework`)
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
    sequence_example_problems(path, spec) -> [str]
                                    for a framework that takes records: what keeps the
                                    model from reading tf.SequenceExamples (TFX's component)

`predict` raises `PartialPredictions` when some rows failed on their own (a remote
request that failed after its retries): those rows fail, the others keep their outputs.

The registry is `inference.config.FRAMEWORKS` (name -> module). Adding a framework is its
module and its line there; detection, the trust gate and the checks read its declaration.
A module imports its framework's library where a model loads, not at its top: detection
reads every declaration, and a run must not import every framework (see
docs/adding-a-framework.md).

`BeamHandler` adapts any Beam `ModelHandler` (a custom one, a Hugging Face pipeline,
TensorRT, tfx_bsl's, a remote endpoint) to `load` + `predict`.
"""
import importlib
import types
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler

from inference import config
from inference.config import ConfigError, ModelConfig
from inference.data import columns


class Framework(NamedTuple):
    """What a framework is: its module's `FRAMEWORK`.

    suffixes: the endings of the file names detected as its models (".onnx").
    reads: more endings of files it loads when a model names the framework, not detected
      as its own by name (another framework's, or a generic one such as ".json").
    sniff: (path) -> whether a file its name does not place is this framework's model, from
      the file's first bytes (read, never loaded); asked for a model file of any ending, and
      for a folder's files ending in `reads`.
    folder: (folder, the names in it) -> whether the folder as a whole is its model (a
      SavedModel, a Hugging Face folder with its config.json); asked in registry order.
    whole_folder: when a model names the framework, a folder is its model as it is.
    safe_content: the pickle-bearing contents its loader reads without running code (see
      `inference.frameworks.trust`).
    reads_files: False for a framework whose uri is not files (a server's URL): no
      detection and no trust gate, the server loads the model.
    signatures: its models are SavedModels run through signatures, which TFX's ModelSpec
      names (signature_name, tag) as in TFX's BulkInferrer.
    """
    suffixes: Tuple[str, ...] = ()
    reads: Tuple[str, ...] = ()
    sniff: Optional[Callable[[str], bool]] = None
    folder: Optional[Callable[[str, Sequence[str]], bool]] = None
    whole_folder: bool = False
    safe_content: Tuple[str, ...] = ()
    reads_files: bool = True
    signatures: bool = False


def get(name: str) -> types.ModuleType:
    """The framework module called `name`."""
    if name not in config.FRAMEWORKS:
        raise ConfigError(f"no framework {name!r}; known: {sorted(config.FRAMEWORKS)}")
    module = importlib.import_module(config.FRAMEWORKS[name])
    if not isinstance(getattr(module, "FRAMEWORK", None), Framework):
        raise ConfigError(f"framework {name!r}: its module {module.__name__} declares no "
                          f"FRAMEWORK = Framework(...)")
    return module


def declared(name: str) -> Framework:
    """The declaration of the framework called `name`."""
    return get(name).FRAMEWORK


def declarations() -> List[Tuple[str, Framework]]:
    """(name, declaration) of every framework, in registry order."""
    return [(name, declared(name)) for name in config.FRAMEWORKS]


def file_head(path: str, size: int = -1) -> bytes:
    """The first `size` bytes of the file at `path` (all of it: -1), as stored: what a
    declaration's `sniff` reads."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read(size)


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
        except Exception as e:
            raise ConfigError(f"cannot read the module file of {what}: {e}") from e
        namespace = {"__name__": f"user_module_{abs(hash(file_path))}",
                     "__file__": file_path}
        try:
            exec(compile(source, file_path, "exec"), namespace)
        except Exception as e:  # the user's module raised while it ran
            raise ConfigError(f"the module file of {what} failed to run: "
                              f"{type(e).__name__}: {e}") from e
        _MODULE_FILES[file_path] = namespace
    if attr not in namespace:
        raise ConfigError(f"the module file of {what} defines no {attr!r}")
    return namespace[attr]

