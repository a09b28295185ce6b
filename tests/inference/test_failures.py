"""One dead-letter type: written as a tf.Example and as a JSON row."""
import base64

import pytest
import tensorflow as tf

from inference.data.failures import Failure


def test_a_dead_letter_round_trips_as_an_example_readable_by_tensorflow():
    failure = Failure("decode", "DecodeError", "bad", b"\x00\xff", "m", "eval",
                      "f.gz:record 3")
    serialized = failure.to_example()
    assert Failure.from_example(serialized) == failure
    feature = tf.train.Example.FromString(serialized).features.feature
    assert feature["record"].bytes_list.value[0] == b"\x00\xff"
    assert feature["lost"].bytes_list.value[0] == b"1"


def test_a_dead_letter_as_a_json_row_holds_the_record_in_base64():
    row = Failure("read", "DamagedFile", "cut", split="eval", lost=40).to_json_row()
    assert row["lost"] == 40 and row["record_base64"] == base64.b64encode(b"").decode()
    assert "record" not in row


def test_stages_are_known_and_messages_short():
    with pytest.raises(ValueError, match="unknown failure stage"):
        Failure("somewhere", "E", "m")
    long = Failure.from_exception("inference", ValueError("x" * 2000))
    assert len(long.message) < 600 and long.error_type == "ValueError"
