"""PredictionLogs written from columns are what TFX's BulkInferrer writes, for every output
kind, whether a chunk goes through the fast path (raw bytes per row) or row by row."""
import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from inference.data import columns
from inference.data.results import ChunkResult, FilePosition
from inference.io import encoding

RECORD = tf.train.Example(features=tf.train.Features(feature={"a": tf.train.Feature(
    float_list=tf.train.FloatList(value=[1.5]))})).SerializeToString()


def _chunk(outputs, records=None, model="m") -> ChunkResult:
    size = len(next(iter(outputs.values())))
    return ChunkResult(model, FilePosition("file", 0), records or [RECORD] * size, outputs,
                       [])


def _tfx_log(record: bytes, outputs) -> prediction_log_pb2.PredictionLog:
    """The log TFX's BulkInferrer writes for model "m" and one record's output rows."""
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "m"
    log.predict_log.request.inputs[encoding.EXAMPLES_INPUT].CopyFrom(
        tf.make_tensor_proto([record], shape=[1]))
    log.predict_log.response.model_spec.name = "m"
    for name, value in outputs.items():
        value = np.asarray(value)
        log.predict_log.response.outputs[name].CopyFrom(
            tf.make_tensor_proto(value, shape=(1,) + value.shape))
    return log


def _parsed(logs):
    return [prediction_log_pb2.PredictionLog.FromString(log) for log in logs]


@pytest.mark.parametrize("outputs", [
    {"output_0": np.float32([[0.25, 0.75], [0.5, 0.5]])},
    {"output_0": np.int64([3, 4])},  # one integer per record: not raw bytes
    {"label": np.array([b"big", b"small"], dtype=object), "score": np.float64([0.5, 0.25])},
    {"output_0": np.float32([[1.0], [2.0]]), "output_1": np.int32([[2, 3], [4, 5]])},
])
def test_logs_are_tfx_logs_and_read_back_with_tensorflow(outputs):
    logs = _parsed(encoding.encode_logs(_chunk(outputs)))
    assert logs == [_tfx_log(RECORD, columns.row(outputs, i)) for i in range(2)]
    for i, log in enumerate(logs):
        for name, tensor in log.predict_log.response.outputs.items():
            got = tf.make_ndarray(tensor)
            assert got.shape == (1,) + np.shape(outputs[name][i])
            np.testing.assert_array_equal(got[0], outputs[name][i])


@pytest.mark.parametrize("record", [b"", b"r" * 127, b"s" * 20000])
def test_records_of_any_size_are_framed_as_protobuf_frames_them(record):
    """Length prefixes of one, two and three bytes, in the fast and the row-by-row path."""
    value = np.float32([[1.5, 2.5]] * 2)
    expected = _tfx_log(record, {"output_0": value[0]}).SerializeToString()
    assert encoding.encode_logs(_chunk({"output_0": value}, [record] * 2)) == [expected] * 2
    ragged = np.empty(2, dtype=object)
    ragged[:] = [value[0], value[1]]
    assert encoding.encode_logs(_chunk({"output_0": ragged}, [record] * 2)) == [expected] * 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32, np.int64,
                                   np.int8, np.uint8, np.bool_])
@pytest.mark.parametrize("shape", [(), (1,), (3,), (2, 2)])
def test_outputs_are_encoded_as_tf_make_tensor_proto_encodes_them(dtype, shape):
    """TFX's logs hold tf.make_tensor_proto(output row, shape [1, ...]): raw bytes for
    several values, the dtype's value field for one (e.g. float_val, int64_val)."""
    value = (np.arange(int(np.prod(shape))) - 1).reshape(shape).astype(dtype)
    logs = encoding.encode_logs(_chunk({"output_0": np.stack([value, value])}))
    assert _parsed(logs) == [_tfx_log(RECORD, {"output_0": value})] * 2


@pytest.mark.parametrize("values", [
    [np.float32([1.0]), np.float32([1.0, 2.0]), np.float32([3.0])],  # shapes differ
    [np.array([b"x"]), np.array([b"yy"]), np.array([b"z"])],
    [{"entity": "B-PER", "score": 0.5}, {"entity": "I-PER"}, {}],
])
def test_ragged_and_object_columns_encode_each_row_as_its_own_tensor(values):
    column = np.empty(len(values), dtype=object)
    column[:] = values
    logs = _parsed(encoding.encode_logs(_chunk({"output_0": column})))
    for log, value in zip(logs, values):
        tensor = log.predict_log.response.outputs["output_0"]
        if isinstance(value, dict):
            assert json.loads(tensor.string_val[0]) == value
        else:
            np.testing.assert_array_equal(tf.make_ndarray(tensor)[0], value)


def test_structured_outputs_are_written_as_json_strings():
    """Hugging Face token classification: a list of entity dicts per record."""
    entities = [{"entity": "B-PER", "score": np.float32(0.5), "index": 1, "word": "bob"},
                {"entity": "I-PER", "score": np.float32(0.25), "index": 2, "word": "smith"}]
    outputs = columns.from_examples([entities])
    [log] = _parsed(encoding.encode_logs(_chunk(outputs)))
    values = log.predict_log.response.outputs["output_0"].string_val
    assert [json.loads(v) for v in values] == [
        {"entity": "B-PER", "score": 0.5, "index": 1, "word": "bob"},
        {"entity": "I-PER", "score": 0.25, "index": 2, "word": "smith"}]


def test_bytes_outputs_keep_their_trailing_nul_bytes():
    column = np.empty(2, dtype=object)
    column[:] = [b"a\x00", b"\x00\x00"]
    logs = _parsed(encoding.encode_logs(_chunk({"output_0": column})))
    assert [log.predict_log.response.outputs["output_0"].string_val[0] for log in logs] == [
        b"a\x00", b"\x00\x00"]


def test_logs_a_framework_wrote_pass_through_as_they_are():
    result = ChunkResult("m", None, [RECORD] * 2, {}, [], [b"first log", b"second log"])
    assert encoding.encode_logs(result) == [b"first log", b"second log"]
    assert encoding.encode_logs(result.take([1])) == [b"second log"]


def test_signature_logs_are_what_tfx_bsl_builds():
    """The TensorFlow predict-signature path: the alias of the signature's input names the
    request tensor, the signature name fills both model specs."""
    outputs = {"scores": np.float32([[0.25, 0.75], [1.0, 0.0]]), "ids": np.int64([[7], [9]])}
    logs = _parsed(encoding.encode_signature_logs([RECORD, b"x"], outputs, "inputs", "sig"))
    for i, log in enumerate(logs):
        expected = prediction_log_pb2.PredictionLog()
        request = expected.predict_log.request
        request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([[RECORD, b"x"][i]], shape=[1]))
        request.model_spec.signature_name = "sig"
        expected.predict_log.response.model_spec.signature_name = "sig"
        for name, value in outputs.items():
            expected.predict_log.response.outputs[name].CopyFrom(tf.make_tensor_proto(
                value[i], dtype=tf.as_dtype(value.dtype).as_datatype_enum,
                shape=np.expand_dims(value[i], axis=0).shape))
        assert log == expected
