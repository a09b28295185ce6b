"""Encoders: one per output format, shared by every framework.

`to_prediction_log` writes what TFX's BulkInferrer writes: a `PredictionLog` whose
`predict_log.request` holds the serialized input example (one string tensor of shape [1])
and whose `response` holds the model's named outputs, each with a leading batch dim of 1.
PredictionLogs from tfx_bsl's TensorFlow handler pass through unchanged.

`encode_prediction_log` returns the same log already serialized: it writes the protobuf
wire format directly (the bytes `to_prediction_log(...).SerializeToString()` gives), which
is several times faster than building the message field by field and serializing it, since
per-record protobuf calls dominate the cost of encoding. `encode_results` does the same for
a chunk of results at once: everything but each record and its output values is written
once per chunk. Values are encoded as
`tf.make_tensor_proto` encodes them, as TFX's BulkInferrer writes them.
"""
import json
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from apache_beam.ml.inference.base import PredictionResult

EXAMPLES_INPUT = "examples"

# TensorFlow's DataType numbers (tensorflow/core/framework/types.proto), written here so
# that encoding imports no TensorFlow: workers running other frameworks never load it.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT8, DT_STRING, DT_INT64, DT_BOOL, DT_HALF = (
    1, 2, 3, 4, 6, 7, 9, 10, 19)
_DTYPES = {
    np.dtype(np.float32): DT_FLOAT,
    np.dtype(np.float64): DT_DOUBLE,
    np.dtype(np.float16): DT_HALF,
    np.dtype(np.int32): DT_INT32,
    np.dtype(np.int64): DT_INT64,
    np.dtype(np.int8): DT_INT8,
    np.dtype(np.uint8): DT_UINT8,
    np.dtype(np.bool_): DT_BOOL,
}
_PREDICTION_LOG_MODULE = "tensorflow_serving.apis.prediction_log_pb2"


def is_prediction_log(value: Any) -> bool:
    """Whether `value` is a tensorflow_serving PredictionLog, without importing it: if the
    module was never imported, no value can be one."""
    module = sys.modules.get(_PREDICTION_LOG_MODULE)
    return module is not None and isinstance(value, module.PredictionLog)


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor (torch, TF, NumPy, Python scalar or list) as a NumPy array."""
    if type(value) is np.ndarray:  # noqa: E721  (the common case, checked first)
        return value
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


def text(value: Any) -> bytes:
    """A value of a string output as bytes: structured values (e.g. a Hugging Face
    token-classification entity, a dict) as JSON, anything else as its text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_plain).encode()
    return str(value).encode()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def tensor_proto(value: np.ndarray):
    """`value` with a leading batch dim of 1, as TFX's BulkInferrer (tfx_bsl) encodes it."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    value = np.asarray(value)
    return tf.make_tensor_proto(value, shape=(1,) + value.shape)


def to_prediction_log(result: PredictionResult, output_names: Sequence[str] = ()):
    """The PredictionLog for one record's result."""
    if is_prediction_log(result.inference):
        return result.inference
    from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=import-outside-toplevel
    # Parsing the directly written bytes once is cheaper than setting each field.
    return prediction_log_pb2.PredictionLog.FromString(
        encode_prediction_log(result, output_names))


# --- The wire format, written directly -------------------------------------------------
#
# PredictionLog.predict_log (6) = PredictLog{request (1), response (2)}
# PredictRequest{model_spec (1) = ModelSpec{name (1)}, inputs (2) = map<string, TensorProto>}
# PredictResponse{outputs (1) = map<string, TensorProto>, model_spec (2)}
# TensorProto{dtype (1), tensor_shape (2) = {dim (2) = {size (1)}}, tensor_content (4),
#             string_val (8)}
# Fields are written in field-number order, proto3 defaults (0, empty bytes) omitted:
# the bytes protobuf's serializer writes for the same message.

_VARINTS = [bytes([i]) for i in range(128)] + [bytes([(i & 0x7F) | 0x80, i >> 7])
                                               for i in range(128, 1 << 14)]


def _varint(value: int) -> bytes:
    if value < 16384:
        return _VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) with a one-byte tag."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _shape_bytes(shape: Tuple[int, ...]) -> bytes:
    """TensorShapeProto with a leading dim of 1, then `shape`."""
    dims = [b"\x08\x01"] + [b"\x08" + _varint(int(s)) if s else b"" for s in shape]
    return b"".join(_field(0x12, dim) for dim in dims)


def _model_spec(model_id: str, tag: int) -> bytes:
    return _field(tag, _field(0x0A, model_id.encode())) if model_id else b""


# Request prefix up to the example's bytes: the "examples" map entry key, then the string
# tensor's fixed part: dtype DT_STRING, shape [1], string_val tag.
_EXAMPLE_KEY = _field(0x0A, EXAMPLES_INPUT.encode()) + b"\x12"
_EXAMPLE_TENSOR_HEAD = (b"\x08" + _varint(DT_STRING)
                        + _field(0x12, _shape_bytes(())) + b"\x42")
_EXAMPLE_TENSOR_HEAD_LEN = len(_EXAMPLE_TENSOR_HEAD)


# tf.make_tensor_proto writes a numeric tensor's values as raw `tensor_content` (4),
# except a single value, which goes to its dtype's repeated field: float_val (5) and
# double_val (6) hold the same raw bytes; the integer fields hold varints. Booleans
# always go to bool_val (11), one varint byte each.
_SINGLE_RAW_TAGS = {DT_FLOAT: b"\x2a", DT_DOUBLE: b"\x32"}
_SINGLE_VARINT_TAGS = {DT_INT32: b"\x3a", DT_INT8: b"\x3a",
                       DT_UINT8: b"\x3a", DT_INT64: b"\x52",
                       DT_BOOL: b"\x5a", DT_HALF: b"\x6a"}


def _raw_content(dtype_enum: int, count: int) -> bool:
    """Whether the values' bytes are written as they are (not for booleans, nor for one
    integer)."""
    return dtype_enum != DT_BOOL and (count != 1 or dtype_enum in _SINGLE_RAW_TAGS)


def _tensor_head(dtype_enum: int, shape: Tuple[int, ...], content_len: int,
                 count: int) -> bytes:
    """A numeric TensorProto's bytes up to its raw values (see `_raw_content`)."""
    head = b"\x08" + _varint(dtype_enum) + _field(0x12, _shape_bytes(shape))
    if content_len:
        tag = _SINGLE_RAW_TAGS[dtype_enum] if count == 1 else b"\x22"
        head += tag + _varint(content_len)
    return head


def _tensor_bytes(value: np.ndarray) -> bytes:
    """`tensor_proto(value).SerializeToString()`, written directly."""
    if value.dtype.kind in "SUO":
        strings = [text(v) for v in value.reshape(-1)]
        return (b"\x08" + _varint(DT_STRING)
                + _field(0x12, _shape_bytes(value.shape))
                + b"".join(b"\x42" + _varint(len(s)) + s for s in strings))
    dtype = _DTYPES.get(value.dtype)
    if dtype is None:
        raise ValueError(f"cannot encode outputs of dtype {value.dtype}")
    if not _raw_content(dtype, value.size):
        if dtype == DT_BOOL:
            payload = value.astype(np.uint8).tobytes()
        else:
            item = value.reshape(-1)[0]
            number = int(item.view(np.uint16)) if dtype == DT_HALF else int(item)
            payload = _varint(number & 0xFFFFFFFFFFFFFFFF)  # negatives: two's complement
        return (b"\x08" + _varint(dtype) + _field(0x12, _shape_bytes(value.shape))
                + _SINGLE_VARINT_TAGS[dtype] + _varint(len(payload)) + payload)
    content = np.ascontiguousarray(value).tobytes()
    return _tensor_head(dtype, value.shape, len(content), value.size) + content


def _output_entries(outputs: Mapping[str, np.ndarray]) -> bytes:
    """PredictResponse.outputs: one map entry (key, TensorProto) per output."""
    return b"".join(
        _field(0x0A, _field(0x0A, name.encode()) + _field(0x12, _tensor_bytes(value)))
        for name, value in outputs.items())


def _frame(record: bytes, request_spec: bytes, response: bytes,
           example_key: bytes = _EXAMPLE_KEY) -> bytes:
    """The serialized PredictionLog around one record and its serialized PredictResponse."""
    tail = b"\x12" + _varint(len(response))
    return b"".join((_log_prefix(len(record), request_spec, len(tail) + len(response),
                                 example_key), record, tail, response))


def _log_prefix(size: int, request_spec: bytes, tail_len: int,
                example_key: bytes = _EXAMPLE_KEY) -> bytes:
    """A PredictionLog's bytes up to its record (of `size` bytes), when the response that
    follows the request is `tail_len` bytes with its tag and length."""
    size_varint = _varint(size)
    tensor_len = _EXAMPLE_TENSOR_HEAD_LEN + len(size_varint) + size
    tensor_varint = _varint(tensor_len)
    entry_len = len(example_key) + len(tensor_varint) + tensor_len
    entry_varint = _varint(entry_len)
    request_len = len(request_spec) + 1 + len(entry_varint) + entry_len
    request_varint = _varint(request_len)
    log_len = 1 + len(request_varint) + request_len + tail_len
    return b"".join((b"\x32", _varint(log_len), b"\x0a", request_varint, request_spec,
                     b"\x12", entry_varint, example_key, tensor_varint,
                     _EXAMPLE_TENSOR_HEAD, size_varint))


def encode_signature_logs(records: Sequence[bytes], outputs: Mapping[str, np.ndarray],
                          input_alias: str, signature_name: str) -> List[bytes]:
    """The serialized PredictionLogs tfx_bsl builds for a batch run through a predict
    signature that parses serialized examples: record i under `input_alias` in the
    request, row i of each output in the response, `signature_name` in both model specs.
    """
    spec = _field(0x1A, signature_name.encode())  # ModelSpec.signature_name
    request_spec, response_spec = _field(0x0A, spec), _field(0x12, spec)
    example_key = _field(0x0A, input_alias.encode()) + b"\x12"
    names = [(_field(0x0A, name.encode()), value) for name, value in outputs.items()]
    return [_frame(record, request_spec,
                   b"".join(_field(0x0A, key + _field(0x12, _tensor_bytes(value[i])))
                            for key, value in names) + response_spec,
                   example_key)
            for i, record in enumerate(records)]


_REQUEST_SPECS: Dict[str, bytes] = {}


def _request_spec(model_id: str) -> bytes:
    spec = _REQUEST_SPECS.get(model_id)
    if spec is None:
        spec = _model_spec(model_id, 0x0A)
        if len(_REQUEST_SPECS) < 4096:
            _REQUEST_SPECS[model_id] = spec
    return spec


def encode_prediction_log(result: PredictionResult, output_names: Sequence[str] = ()) -> bytes:
    """`to_prediction_log(result, output_names).SerializeToString()`, written directly."""
    inference = result.inference
    if is_prediction_log(inference):
        return inference.SerializeToString()
    model_id = result.model_id or ""
    response = (_output_entries(named_outputs(inference, output_names))
                + _model_spec(model_id, 0x12))
    return _frame(result.example, _request_spec(model_id), response)


def encode_results(results: Sequence[PredictionResult],
                   output_names: Sequence[str] = ()) -> List[bytes]:
    """`encode_prediction_log` of each of one model's results; when every record's output
    has the same structure of NumPy values, they are stacked and written as a batch."""
    if results:
        columns = _stacked([result.inference for result in results], output_names)
        if columns is not None:
            encoded = _encode_columns([result.example for result in results], columns,
                                      results[0].model_id or "")
            if encoded is not None:
                return encoded
    return [encode_prediction_log(result, output_names) for result in results]


_NUMPY = (np.ndarray, np.generic)


def _stacked(values: Sequence[Any], output_names: Sequence[str]
             ) -> Optional[Dict[str, np.ndarray]]:
    """Per-record outputs as {output name: [batch, ...]}: when every record holds one
    NumPy value, or a dict of them, of the same shapes and dtypes; else None."""
    first = values[0]
    if isinstance(first, _NUMPY):
        column = _column(values)
        if len(output_names) > 1 or column is None:
            return None
        return {output_names[0] if output_names else "output_0": column}
    if isinstance(first, dict) and first:
        if not all(type(v) is dict and v.keys() == first.keys()  # noqa: E721
                   for v in values):
            return None
        columns = {}
        for key in first:
            columns[str(key)] = _column([v[key] for v in values])
            if columns[str(key)] is None:
                return None
        return columns
    return None


def _column(values: Sequence[Any]) -> Optional[np.ndarray]:
    """NumPy values of one shape and dtype as one [batch, ...] array, else None."""
    first = values[0]
    if isinstance(first, np.generic):  # a scalar's type fixes its dtype and shape
        kind = type(first)
        return np.array(values) if all(type(v) is kind for v in values) else None
    if isinstance(first, np.ndarray):
        shape, dtype = first.shape, first.dtype
        if all(type(v) is np.ndarray and v.shape == shape and v.dtype == dtype
               for v in values):
            return np.array(values)
    return None


def _encode_columns(records: Sequence[bytes], columns: Mapping[str, np.ndarray],
                    model_id: str) -> Optional[List[bytes]]:
    """The batch's serialized PredictionLogs, each output's row written as raw bytes; None
    when an output's rows are not written that way (strings, one integer: see
    `_raw_content`)."""
    if not records:
        return []
    outputs = []  # (map entry bytes up to the row's values, all rows' bytes, row length)
    for name, array in columns.items():
        dtype = _DTYPES.get(array.dtype)
        row = array[0]
        if dtype is None or not _raw_content(dtype, row.size):
            return None
        tensor_head = _tensor_head(dtype, row.shape, row.nbytes, row.size)
        entry = _field(0x0A, name.encode()) + b"\x12" + _varint(len(tensor_head) + row.nbytes)
        head = b"\x0a" + _varint(len(entry) + len(tensor_head) + row.nbytes) + entry + tensor_head
        outputs.append((head, np.ascontiguousarray(array).tobytes(), row.nbytes))
    response_spec = _model_spec(model_id, 0x12)
    response_len = sum(len(head) + size for head, _, size in outputs) + len(response_spec)
    response_head = b"\x12" + _varint(response_len)
    tail_len = len(response_head) + response_len
    request_spec = _request_spec(model_id)
    prefixes: Dict[int, bytes] = {}  # record size -> the log's bytes before the record
    (first_head, first_flat, first_size), rest = outputs[0], outputs[1:]
    middle = response_head + first_head
    encoded = []
    for i, record in enumerate(records):
        size = len(record)
        prefix = prefixes.get(size)
        if prefix is None:
            prefix = prefixes[size] = _log_prefix(size, request_spec, tail_len)
        parts = [prefix, record, middle, first_flat[i * first_size:(i + 1) * first_size]]
        for head, flat, row_size in rest:
            parts += (head, flat[i * row_size:(i + 1) * row_size])
        parts.append(response_spec)
        encoded.append(b"".join(parts))
    return encoded
