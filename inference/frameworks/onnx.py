"""ONNX models in ONNX Runtime, loaded by Beam's handler.

A stacked layout feeds the model's first input; a dict layout feeds each feature to the
model input of the same name. Every model output comes back under its ONNX name.
"""
import numpy as np
from apache_beam.ml.inference import onnx_inference

from inference import columns
from inference.config import ModelConfig

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


def load(path: str, spec: ModelConfig):
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if spec.device == "GPU"
                 else ["CPUExecutionProvider"])
    return onnx_inference.OnnxModelHandlerNumpy(path, providers=providers).load_model()


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
