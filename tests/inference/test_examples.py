"""tf.train.Example without TensorFlow: the same bytes TensorFlow reads and writes."""
import tensorflow as tf

from inference.data import examples
from inference.data.failures import Failure


def test_what_is_written_reads_back_with_tensorflow_and_back():
    record = examples.serialize({"f": [1.5, 2.0], "i": [3], "s": ["x", b"y"],
                                 "d": [{"k": 1}]})
    parsed = tf.train.Example.FromString(record).features.feature
    assert list(parsed["f"].float_list.value) == [1.5, 2.0]
    assert list(parsed["i"].int64_list.value) == [3]
    assert list(parsed["s"].bytes_list.value) == [b"x", b"y"]
    assert list(parsed["d"].bytes_list.value) == [b'{"k": 1}']
    tf_record = tf.train.Example(features=tf.train.Features(feature={
        "g": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"ab"]))})
    ).SerializeToString()
    assert examples.first_value(tf_record, "g") == "ab"
    assert examples.first_value(tf_record, "missing") is None
    assert examples.values(examples.parse(tf_record), "g") == [b"ab"]


def test_features_are_added_and_replaced_by_appending_bytes():
    record = examples.serialize({"a": [1], "b": [2.5]})
    enriched = examples.with_features(record, {"b": [7.0], "model_output_0": [0.25]})
    parsed = tf.train.Example.FromString(enriched).features.feature
    assert list(parsed["a"].int64_list.value) == [1]
    assert list(parsed["b"].float_list.value) == [7.0]
    assert list(parsed["model_output_0"].float_list.value) == [0.25]


def test_bytes_values_keep_trailing_nul_bytes():
    record = examples.serialize({"x": [0.0]})  # its packed float, the last bytes, is 0
    assert record.endswith(b"\x00")
    for value in (record, [record, b"a\x00\x00"]):
        written = examples.serialize({"v": value})
        assert list(tf.train.Example.FromString(written).features.feature["v"].bytes_list
                    .value) == (value if isinstance(value, list) else [value])
    # So a dead letter of such a record replays as it was.
    assert Failure.from_example(Failure("inference", "E", "m", record).to_example()
                                ).record == record
