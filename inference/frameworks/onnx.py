"""ONNX models in ONNX Runtime, loaded by Beam's handler.

A stacked layout feeds the model's first input; a dict layout feeds each feature to the
model input of the same name. Every model output comes back under its ONNX name.

options:
  session_options: ONNX Runtime `SessionOptions` settings by name, e.g.
    {"intra_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL"} (an enum
    setting takes its member's name). By default a session runs one intra-op thread per
    core, and each Beam worker process (Dataflow starts one per vCPU) has its own session.
"""
from typing import TYPE_CHECKING, Optional

import numpy as np

from inference.config import ConfigError, ModelConfig
from inference.data import columns
from inference.frameworks import Framework

if TYPE_CHECKING:
    import onnxruntime

FRAMEWORK = Framework(suffixes=(".onnx",))

# ONNX Runtime's input type names -> the NumPy dtype it accepts for them.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


def check(path: str, spec: ModelConfig):
    session_options(spec)


def load(path: str, spec: ModelConfig):
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if spec.device == "GPU"
                 else ["CPUExecutionProvider"])
    from apache_beam.ml.inference import onnx_inference
    return onnx_inference.OnnxModelHandlerNumpy(
        path, session_options=session_options(spec), providers=providers).load_model()


def session_options(spec: ModelConfig) -> Optional["onnxruntime.SessionOptions"]:
    """The model's `options.session_options` as ONNX Runtime's SessionOptions (None: its
    defaults). Raises ConfigError for a setting it does not have or a value of the wrong
    type (a bool for a count, a negative count, an unknown enum member)."""
    settings = spec.options.get("session_options")
    if not settings:
        return None
    where = f"model {spec.name!r}: options.session_options"
    if not isinstance(settings, dict):
        raise ConfigError(f"{where} must map ONNX Runtime's SessionOptions settings to "
                          f"values, e.g. {{\"intra_op_num_threads\": 1}}; got {settings!r}")
    import onnxruntime
    options = onnxruntime.SessionOptions()
    known = sorted(name for name in dir(options)
                   if not name.startswith("_") and not callable(getattr(options, name)))
    for name, value in settings.items():
        if name not in known:
            raise ConfigError(f"{where}: ONNX Runtime's SessionOptions has no setting "
                              f"{name!r}; settings: {known}")
        setattr(options, name, _setting(f"{where}.{name}", getattr(options, name), value))
    return options


def _setting(where: str, default, value):
    """`value` as the type of the setting whose default is `default`."""
    members = getattr(type(default), "__members__", None)
    if members is not None:
        if not isinstance(value, str) or value not in members:
            raise ConfigError(f"{where}={value!r}: choose one of {sorted(members)}")
        return members[value]
    kind = type(default)
    if type(value) is not kind or (kind is int and value < 0):
        wanted = {bool: "true or false", int: "a count, 0 or more"}.get(kind, kind.__name__)
        raise ConfigError(f"{where}={value!r}: ONNX Runtime takes {wanted} for it")
    return value


def predict(session, inputs, spec: ModelConfig):
    """Feeds inputs by name and returns every output by name (Beam's default feeds the
    first input and keeps the first output only)."""
    metas = {meta.name: meta for meta in session.get_inputs()}
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(metas))
        if unknown:
            raise ValueError(f"features {unknown} are not inputs of the ONNX model, whose "
                             f"inputs are {sorted(metas)}: name the features after them")
    else:
        inputs = {next(iter(metas)): inputs}
    feeds = {name: _as_input(value, metas[name].type) for name, value in inputs.items()}
    names = [meta.name for meta in session.get_outputs()]
    outputs = {name: _dense(value) for name, value in zip(names, session.run(names, feeds))}
    return columns.from_batch(outputs, len(next(iter(feeds.values()))))


def _as_input(value: np.ndarray, ort_type: str) -> np.ndarray:
    dtype = _ORT_DTYPES.get(ort_type)
    return value if dtype is None else value.astype(dtype, copy=False)


def _dense(value):
    """skl2onnx classifiers' default ZipMap output (one {class: probability} dict per
    example) as a [batch, classes] array; other outputs as they are."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return np.asarray([list(row.values()) for row in value], dtype=np.float32)
    return value
