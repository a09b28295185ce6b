"""Encoders: one per output format, shared by every framework.

`to_prediction_log` writes what TFX's BulkInferrer writes: a `PredictionLog` whose
`predict_log.request` holds the serialized input example (one string tensor of shape [1])
and whose `response` holds the model's named outputs, each with a leading batch dim of 1.
PredictionLogs from tfx_bsl's TensorFlow handler pass through unchanged.
"""
from typing import Any, Dict, Mapping, Sequence

import numpy as np
from apache_beam.ml.inference.base import PredictionResult
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import prediction_log_pb2

EXAMPLES_INPUT = "examples"
_DTYPES = {
    np.dtype(np.float32): types_pb2.DT_FLOAT,
    np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.float16): types_pb2.DT_HALF,
    np.dtype(np.int32): types_pb2.DT_INT32,
    np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.int8): types_pb2.DT_INT8,
    np.dtype(np.uint8): types_pb2.DT_UINT8,
    np.dtype(np.bool_): types_pb2.DT_BOOL,
}


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor (torch, TF, NumPy, Python scalar or list) as a NumPy array."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy"):  # tf.Tensor
        value = value.numpy()
    return np.asarray(value)


def named_outputs(inference: Any, output_names: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """A record's inference as {output name: array}.

    Dicts keep their keys; a tuple/list of tensors or a single tensor is named by
    `output_names`, else `output_0`, `output_1`, ... (TensorFlow's default output names).
    """
    if isinstance(inference, Mapping):
        return {str(k): to_numpy(v) for k, v in inference.items()}
    if isinstance(inference, (tuple, list)) and inference and hasattr(inference[0], "shape"):
        values = list(inference)
    else:
        values = [inference]
    names = list(output_names) or [f"output_{i}" for i in range(len(values))]
    if len(names) != len(values):
        raise ValueError(f"output_names {names} do not match the model's {len(values)} "
                         f"output(s)")
    return {name: to_numpy(value) for name, value in zip(names, values)}


def tensor_proto(value: np.ndarray) -> tensor_pb2.TensorProto:
    """`value` with a leading batch dim of 1, as tf.make_tensor_proto would encode it."""
    proto = tensor_pb2.TensorProto()
    proto.tensor_shape.dim.add().size = 1
    for size in value.shape:
        proto.tensor_shape.dim.add().size = size
    if value.dtype.kind in "SUO":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode()
                                for v in value.reshape(-1))
        return proto
    dtype = _DTYPES.get(value.dtype)
    if dtype is None:
        raise ValueError(f"cannot encode outputs of dtype {value.dtype}")
    proto.dtype = dtype
    proto.tensor_content = np.ascontiguousarray(value).tobytes()
    return proto


def to_prediction_log(result: PredictionResult,
                      output_names: Sequence[str] = ()) -> prediction_log_pb2.PredictionLog:
    """The PredictionLog for one record's result."""
    if isinstance(result.inference, prediction_log_pb2.PredictionLog):
        return result.inference
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    if result.model_id:
        request.model_spec.name = result.model_id
        log.predict_log.response.model_spec.name = result.model_id
    example = request.inputs[EXAMPLES_INPUT]
    example.dtype = types_pb2.DT_STRING
    example.tensor_shape.dim.add().size = 1
    example.string_val.append(result.example)
    outputs = log.predict_log.response.outputs
    for name, value in named_outputs(result.inference, output_names).items():
        outputs[name].CopyFrom(tensor_proto(value))
    return log
