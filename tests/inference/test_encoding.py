"""The PredictionLog encoder writes what TFX readers expect, for every output kind."""
import json

import numpy as np
import pytest
import tensorflow as tf
import torch
from apache_beam.ml.inference.base import PredictionResult
from tensorflow_serving.apis import prediction_log_pb2

from inference import encoding

RECORD = tf.train.Example(features=tf.train.Features(feature={"a": tf.train.Feature(
    float_list=tf.train.FloatList(value=[1.5]))})).SerializeToString()


@pytest.mark.parametrize("inference, expected", [
    (np.float32([0.25, 0.75]), {"output_0": np.float32([0.25, 0.75])}),
    (torch.tensor([3, 4]), {"output_0": np.int64([3, 4])}),
    ({"label": np.array(b"big"), "score": np.float64(0.5)},
     {"label": np.array(b"big", dtype=object), "score": np.float64(0.5)}),
    ((np.float32([1.0]), np.int32([2, 3])),
     {"output_0": np.float32([1.0]), "output_1": np.int32([2, 3])}),
])
def test_logs_read_back_with_tensorflow(inference, expected):
    data = encoding.encode_prediction_log(PredictionResult(RECORD, inference, "m"))
    log = prediction_log_pb2.PredictionLog.FromString(data)
    assert log == encoding.to_prediction_log(PredictionResult(RECORD, inference, "m"))
    request = log.predict_log.request
    assert request.model_spec.name == log.predict_log.response.model_spec.name == "m"
    assert list(request.inputs[encoding.EXAMPLES_INPUT].string_val) == [RECORD]
    outputs = log.predict_log.response.outputs
    assert set(outputs) == set(expected)
    for name, value in expected.items():
        got = tf.make_ndarray(outputs[name])
        assert got.shape == (1,) + np.shape(value)  # a leading batch dim of 1, as TFX's
        np.testing.assert_array_equal(got[0], value)


def _tfx_log(record: bytes, value: np.ndarray) -> prediction_log_pb2.PredictionLog:
    """The log TFX's BulkInferrer writes for model "m" and one output row."""
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "m"
    log.predict_log.request.inputs[encoding.EXAMPLES_INPUT].CopyFrom(
        tf.make_tensor_proto([record], shape=[1]))
    log.predict_log.response.model_spec.name = "m"
    log.predict_log.response.outputs["output_0"].CopyFrom(
        tf.make_tensor_proto(value, shape=(1,) + value.shape))
    return log


@pytest.mark.parametrize("record", [b"", b"r" * 127, b"s" * 20000])
def test_records_of_any_size_are_framed_as_protobuf_frames_them(record):
    """Length prefixes of one, two and three bytes, in the per-record and chunk paths."""
    value = np.float32([1.5, 2.5])
    expected = _tfx_log(record, value)
    results = [PredictionResult(record, value, "m")] * 2
    assert encoding.encode_prediction_log(results[0]) == expected.SerializeToString()
    assert encoding.encode_results(results) == [expected.SerializeToString()] * 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32, np.int64,
                                   np.int8, np.uint8, np.bool_])
@pytest.mark.parametrize("shape", [(), (1,), (3,), (2, 2)])
def test_outputs_are_encoded_as_tf_make_tensor_proto_encodes_them(dtype, shape):
    """TFX's logs hold tf.make_tensor_proto(output row, shape [1, ...]): raw bytes for
    several values, the dtype's value field for one (e.g. float_val, int64_val)."""
    value = (np.arange(int(np.prod(shape))) - 1).reshape(shape).astype(dtype)
    expected = _tfx_log(RECORD, value)
    result = PredictionResult(RECORD, value, "m")
    assert prediction_log_pb2.PredictionLog.FromString(
        encoding.encode_prediction_log(result)) == expected
    rows = [PredictionResult(RECORD, row, "m") for row in np.stack([value, value])]
    assert [prediction_log_pb2.PredictionLog.FromString(data) for data in
            encoding.encode_results(rows)] == [expected, expected]


@pytest.mark.parametrize("outputs", [
    [np.float64(i) for i in range(3)],  # scikit-learn's predict: a NumPy scalar per record
    [np.float32([i, 2 * i]) for i in range(3)],
    [{"score": np.float32(i), "probabilities": np.float32([i, 1 - i])}  # ONNX: by name
     for i in range(3)],
    [{"label": np.int64(i)} for i in range(3)],  # one integer each: not raw bytes
    [np.float32([1.0]), np.float32([1.0, 2.0]), np.float32([3.0])],  # shapes differ
    [np.float32(1.0), np.float64(2.0)],  # dtypes differ
    [np.float32([1.0, 2.0]), np.float64([3.0, 4.0])],
    [np.array([b"x"]), np.array([b"y"]), np.array([b"z"])],
])
def test_a_chunk_encodes_as_each_of_its_records_alone(outputs):
    results = [PredictionResult(RECORD, output, "m") for output in outputs]
    assert encoding.encode_results(results) == [encoding.encode_prediction_log(r)
                                                for r in results]


def test_structured_outputs_are_written_as_json_strings():
    """Hugging Face token classification: a list of entity dicts per record."""
    entities = [{"entity": "B-PER", "score": np.float32(0.5), "index": 1, "word": "bob"},
                {"entity": "I-PER", "score": np.float32(0.25), "index": 2, "word": "smith"}]
    log = encoding.to_prediction_log(PredictionResult(RECORD, entities, "m"))
    values = log.predict_log.response.outputs["output_0"].string_val
    assert [json.loads(v) for v in values] == [
        {"entity": "B-PER", "score": 0.5, "index": 1, "word": "bob"},
        {"entity": "I-PER", "score": 0.25, "index": 2, "word": "smith"}]


def test_output_names_rename_unnamed_outputs_and_must_match():
    log = encoding.to_prediction_log(
        PredictionResult(RECORD, np.float32([0.5]), "m"), output_names=["probability"])
    assert set(log.predict_log.response.outputs) == {"probability"}
    with pytest.raises(ValueError, match="do not match"):
        encoding.to_prediction_log(PredictionResult(RECORD, np.float32([0.5]), "m"),
                                   output_names=["a", "b"])
