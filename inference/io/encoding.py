"""PredictionLogs, as TFX's BulkInferrer writes them, from columnar results.

A log's `predict_log.request` holds the serialized input example (one string tensor of
shape [1]) and its `response` the model's named outputs, each with a leading batch dim of 1,
encoded as `tf.make_tensor_proto` encodes them. The protobuf wire format is written here
directly, a chunk at a time: everything but each record and its output values is written
once per chunk, several times faster than building and serializing messages field by field
(per-record protobuf calls would dominate the cost of the engine). Logs a framework wrote
itself (the PREDICTION_LOG column) are written as they are.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from inference.data.examples import text
from inference.data.results import ChunkResult

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


def encode_logs(result: ChunkResult) -> List[bytes]:
    """The serialized PredictionLog of each predicted record of a chunk."""
    if result.prediction_logs is not None:
        return list(result.prediction_logs)
    encoded = _encode_columns(result.records, result.outputs, result.model)
    if encoded is not None:
        return encoded
    request_spec, response_spec = _request_spec(result.model), _model_spec(result.model, 0x12)
    return [_frame(record, request_spec, _output_entries(
        {name: _row(column, i) for name, column in result.outputs.items()})
        + response_spec) for i, record in enumerate(result.records)]


def _row(column: np.ndarray, index: int) -> np.ndarray:
    """Row `index` of a column as an array; an object column's bytes stay as they are
    (NumPy's fixed-width bytes would drop trailing NUL bytes)."""
    value = column[index]
    if isinstance(value, np.ndarray):
        return value
    return np.array(value, dtype=object) if column.dtype == object else np.asarray(value)


def _encode_columns(records: Sequence[bytes], columns: Mapping[str, np.ndarray],
                    model_id: str) -> Optional[List[bytes]]:
    """The batch's serialized PredictionLogs, each output's row written as raw bytes; None
    when an output's rows are not written that way (strings, ragged rows, one integer: see
    `_raw_content`)."""
    if not records:
        return []
    if not columns:
        return None
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
