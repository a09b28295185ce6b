"""TensorRT engines (.engine / .plan / .trt), or ONNX files built into one at load time,
via Beam's TensorRTEngineHandlerNumPy. Needs an NVIDIA GPU, CUDA and the `tensorrt` and
`cuda-python` packages on the workers; everything is imported only when a model uses it.

An engine has a fixed input shape: max_batch_size must fit it (batches smaller than the
engine's are padded with zeros, and the padding's outputs dropped: Beam's inference
function copies the engine's whole input buffer from the batch).
"""
import posixpath

import numpy as np

from inference.config import ConfigError, ModelConfig
from inference.frameworks import BeamHandler, Framework

# ONNX files are ONNX Runtime's by name; TensorRT builds them into an engine when named.
FRAMEWORK = Framework(suffixes=(".engine", ".plan", ".trt"), reads=(".onnx",))


def check(path: str, spec: ModelConfig):
    _import_tensorrt(spec)
    if not spec.max_batch_size:
        raise ConfigError(f"model {spec.name!r}: a TensorRT engine takes batches up to a "
                          f"fixed size: set max_batch_size to the engine's batch size")


def load(path: str, spec: ModelConfig) -> BeamHandler:
    tensorrt_inference = _import_tensorrt(spec)
    batching = dict(min_batch_size=spec.min_batch_size or 1,
                    max_batch_size=spec.max_batch_size)
    if posixpath.splitext(path)[1].lower() == ".onnx":
        handler = _onnx_handler_class(tensorrt_inference)(onnx_path=path, **batching)
    else:
        handler = tensorrt_inference.TensorRTEngineHandlerNumPy(engine_path=path, **batching)
    return BeamHandler.load(handler)


def predict(model: BeamHandler, inputs, spec: ModelConfig):
    binding = model.model.inputs[0]  # the engine's input: its fixed shape and dtype
    batch = np.zeros(binding["shape"], binding["dtype"])
    count = len(inputs)
    if count > len(batch):
        raise ValueError(f"a batch of {count} exceeds the engine's batch size {len(batch)}: "
                         f"lower max_batch_size")
    batch[:count] = np.asarray(inputs).reshape((count,) + batch.shape[1:])
    outputs = model.predict(batch, spec.output_names)
    return {name: column[:count] for name, column in outputs.items()}


def _import_tensorrt(spec: ModelConfig):
    try:
        import tensorrt  # noqa: F401
        from apache_beam.ml.inference import tensorrt_inference
        from cuda import cuda  # noqa: F401
    except ImportError as e:
        raise ConfigError(
            f"model {spec.name!r}: TensorRT needs an NVIDIA GPU with the `tensorrt` package "
            f"and CUDA (`cuda-python`); this machine lacks them ({e}). Run it on a GPU "
            f"worker with TensorRT, or run the model's ONNX file with framework='onnx'.") from e
    return tensorrt_inference


def _onnx_handler_class(tensorrt_inference):
    """Beam's load_model reads `engine_path` only (an ONNX file needs load_onnx +
    build_engine called by hand): this thin subclass builds the engine at load time."""

    class OnnxTensorRTHandlerNumPy(tensorrt_inference.TensorRTEngineHandlerNumPy):
        def load_model(self):
            return self.build_engine(*self.load_onnx())

    return OnnxTensorRTHandlerNumPy
