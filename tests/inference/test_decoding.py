"""One decode per batch: tfx_bsl to columns, then a model's inputs, bad rows named."""
import multiprocessing
import threading

import numpy as np
import pytest

from inference.config import InputSpec
from inference.data import decoding
from tests import helpers


def test_decoding_pads_variable_length_and_names_bad_rows():
    import tensorflow as tf
    empty_ids = tf.train.Example()
    empty_ids.features.feature["ids"].int64_list.SetInParent()
    empty_ids.features.feature["x"].float_list.value.append(1.5)
    records = [helpers.example({"ids": [1, 2, 3], "x": [0.5]}),
               helpers.example({"ids": [4], "x": [float("nan")]}),
               empty_ids.SerializeToString()]
    columns = decoding.ExampleDecoder()(records)
    longest = decoding.InputMapping(InputSpec(features=["ids"], dtype="int64",
                                              padding="longest", pad_value=-1))(columns)
    np.testing.assert_array_equal(longest, [[1, 2, 3], [4, -1, -1], [-1, -1, -1]])
    capped = decoding.InputMapping(InputSpec(features=["ids"], dtype="int64",
                                             padding="max_length", max_length=2))(columns)
    np.testing.assert_array_equal(capped, [[1, 2], [4, 0], [0, 0]])
    with pytest.raises(decoding.InputError) as raised:
        decoding.InputMapping(InputSpec(features=["x"]))(columns)
    assert raised.value.rows.tolist() == [1] and "NaN" in str(raised.value)
    with pytest.raises(decoding.InputError) as raised:
        decoding.InputMapping(InputSpec(features=["ids"], dtype="int64"))(columns)
    assert raised.value.rows.tolist() == [0, 2]  # 3 values and 0 values, where 1 is due
    assert "set inputs.padding='longest'" in str(raised.value)
    fixed = decoding.ExampleDecoder()([helpers.example({"xy": [1.0, 2.0]})] * 2)
    with pytest.raises(decoding.InputError, match=r"exactly 1 value.*set inputs.width=2"):
        decoding.InputMapping(InputSpec(features=["xy"]))(fixed)


def test_taking_rows_of_decoded_columns_equals_decoding_those_rows():
    import tensorflow as tf
    no_ids = tf.train.Example()
    no_ids.features.feature["ids"].int64_list.SetInParent()
    no_ids.features.feature["w"].bytes_list.value.extend([b"b", b"c"])
    records = [helpers.example({"ids": [1, 2, 3], "w": [b"a"]}),
               helpers.example({"ids": [4]}),  # no "w"
               no_ids.SerializeToString(),  # an empty "ids"
               helpers.example({"ids": [5, 6], "w": [b"d"]})]
    decode = decoding.ExampleDecoder()
    columns = decode(records)
    for rows in ([3, 0], [1], [2, 1, 0, 3]):
        taken = decoding.take(columns, np.asarray(rows))
        direct = decode([records[i] for i in rows])
        # A feature none of the rows has is not decoded at all; taken, it is all missing.
        assert set(taken) >= set(direct)
        assert all(taken[name].missing.all() for name in set(taken) - set(direct))
        for name, column in direct.items():
            for got, want in zip(taken[name], column):
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {rows}")


def test_big_batches_decode_in_slices_to_the_columns_of_one_decode(monkeypatch):
    records = ([helpers.example({"ids": [1, 2, 3], "x": [0.5]})] * 3
               + [helpers.example({"x": [1.5]})] * 4  # a whole slice without "ids"
               + [helpers.example({"ids": [7], "w": [b"z"]}), helpers.example({"ids": [8, 9]})])
    whole = decoding.ExampleDecoder()(records)
    monkeypatch.setattr(decoding, "DECODE_SLICE", 3)
    sliced = decoding.ExampleDecoder()(records)
    assert set(sliced) == set(whole) == {"ids", "x", "w"}
    for name, column in whole.items():
        for got, want in zip(sliced[name], column):
            np.testing.assert_array_equal(got, want, err_msg=name)
            assert got.dtype == want.dtype, name
    mixed = [helpers.example({"v": [1.5]})] * 3 + [helpers.example({"v": [2]})]
    with pytest.raises(ValueError, match="'v' holds values of different types"):
        decoding.ExampleDecoder()(mixed)


def _schema(**types):
    from tensorflow_metadata.proto.v0 import schema_pb2
    schema = schema_pb2.Schema()
    for name, kind in types.items():
        schema.feature.add(name=name, type=getattr(schema_pb2, kind))
    return schema


def test_slices_decode_side_by_side_each_thread_with_its_own_decoder(monkeypatch):
    # A schema decoder keeps its column builders between calls: one shared by threads
    # would mix the slices' values up.
    records = [helpers.example({"ids": [i] * (1 + i % 4), "x": [i * 0.5]})
               for i in range(400)]
    decoder = decoding.ExampleDecoder(_schema(ids="INT", x="FLOAT"))
    whole = decoder(records)
    monkeypatch.setattr(decoding, "DECODE_SLICE", 8)
    threads = set()
    build = decoding.ExampleDecoder._new_decoder
    monkeypatch.setattr(decoding.ExampleDecoder, "_new_decoder",
                        lambda self: threads.add(threading.current_thread().name) or build(self))
    for _ in range(5):
        sliced = decoding.ExampleDecoder(_schema(ids="INT", x="FLOAT"))(records)
        for name, column in whole.items():
            for got, want in zip(sliced[name], column):
                np.testing.assert_array_equal(got, want, err_msg=name)
    assert len(threads) >= min(2, decoding.DECODE_THREADS)
    assert all(name.startswith("decode") for name in threads)


def test_a_forked_child_decodes_on_threads_of_its_own(monkeypatch):
    monkeypatch.setattr(decoding, "DECODE_SLICE", 8)
    records = [helpers.example({"x": [float(i)]}) for i in range(100)]
    decoding.ExampleDecoder()(records)  # the parent's pool has threads now

    def child(queue):
        queue.put(decoding.ExampleDecoder()(records)["x"].values.tolist())

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    assert queue.get(timeout=60) == [float(i) for i in range(100)]
    process.join(timeout=60)
    assert process.exitcode == 0


def test_sequence_examples_decode_to_their_context_features():
    import pickle

    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import schema_pb2

    def sequence_example(f, steps):
        example = tf.train.SequenceExample()
        example.context.feature["f"].float_list.value.append(f)
        example.context.feature["i"].int64_list.value.append(int(f))
        for step in steps:
            example.feature_lists.feature_list["s"].feature.add().float_list.value.append(step)
        return example.SerializeToString()

    records = [sequence_example(1.5, [1.0, 2.0]), sequence_example(2.5, [])]
    schema = schema_pb2.Schema()
    schema.feature.add(name="f", type=schema_pb2.FLOAT)
    schema.feature.add(name="i", type=schema_pb2.INT)
    schema.feature.add(name=decoding.SEQUENCE_COLUMN, type=schema_pb2.STRUCT
                       ).struct_domain.feature.add(name="s", type=schema_pb2.FLOAT)
    for decoder in (decoding.SequenceExampleDecoder(),
                    decoding.SequenceExampleDecoder(schema, ["f"])):
        columns = pickle.loads(pickle.dumps(decoder))(records)  # as a worker gets it
        assert decoding.SEQUENCE_COLUMN not in columns and "s" not in columns
        np.testing.assert_array_equal(
            decoding.InputMapping(InputSpec(features=["f"]))(columns), [[1.5], [2.5]])
