"""Routing splits chunks by model or key and chains models; nothing else changes."""
import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to

from inference.config import InferenceConfig, ModelConfig
from inference.data.failures import FAILURES_TAG
from inference.data.results import ChunkResult, FilePosition
from inference.engine import routing
from tests import helpers


def _records(n):
    return [helpers.example({"id": [i], "group": ["ab"[i % 2]]}) for i in range(n)]


def test_ab_shares_are_stable_hashes_of_the_routing_value():
    config = InferenceConfig(models=[ModelConfig(name="a"), ModelConfig(name="b")],
                             routing="ab", fractions=[0.25, 0.75], routing_feature="id")
    bounds = routing.cumulative(config)
    assert bounds == [0.25]
    picks = [routing.ab_index(r, 2, bounds, "id") for r in _records(400)]
    assert picks == [routing.ab_index(r, 2, bounds, "id") for r in _records(400)]
    assert 0.15 < picks.count(0) / 400 < 0.35
    garbage = b"\xff\xfe not an example"  # hashed by its bytes; its model dead-letters it
    assert routing.ab_index(garbage, 2, bounds, "id") in (0, 1)


def test_a_chunk_splits_by_model_and_parts_lose_their_positions():
    config = InferenceConfig(models=[ModelConfig(name="a"), ModelConfig(name="b")],
                             routing="ab", routing_feature="id")
    records = _records(20)
    parts = list(routing.SplitAB(config).process((FilePosition("f.gz", 0), records)))
    assert sorted(r for part in parts for r in part.value[1]) == sorted(records)
    assert {part.tag for part in parts} == {"0", "1"}
    assert all(part.value[0] == ("f.gz", -1) for part in parts)


def test_keys_route_records_and_records_without_a_model_fail_at_routing():
    config = InferenceConfig(routing="keyed", routing_feature="group", models=[
        ModelConfig(name="a", keys=["a"])])
    key_records = routing.KeyRecords(config)
    key_records.setup()
    out = list(key_records.process((FilePosition("f.gz", 0), _records(4))))
    keyed = [o for o in out if not hasattr(o, "tag")]
    failed = [o.value for o in out if getattr(o, "tag", None) == FAILURES_TAG]
    assert [(key, len(part[1])) for key, part in keyed] == [("a", 2)]
    assert [(f.stage, f.source) for f in failed] == [("routing", "f.gz:record 1"),
                                                      ("routing", "f.gz:record 3")]
    assert "no model serves group='b'" in failed[0].message


def test_grouped_records_are_rechunked_by_size():
    out = list(routing.rechunk(("k", [(FilePosition("f", 0), [b"1", b"2", b"3"]),
                                      (FilePosition("f", 3), [b"4"])]), 3))
    assert out == [("k", (("f", -1), [b"1", b"2", b"3"])), ("k", (("f", -1), [b"4"]))]


def test_the_next_model_reads_the_previous_outputs_as_features():
    records = _records(2)
    result = ChunkResult("first", FilePosition("f.gz", 0), records,
                         {"output_0": np.float32([[0.5], [1.5]]),
                          "label": np.array([b"x", b"y"], dtype=object)}, [])
    origin, enriched = routing.enrich(result)
    assert origin == ("f.gz", 0)
    feature = tf.train.Example.FromString(enriched[1]).features.feature
    assert list(feature["first_output_0"].float_list.value) == [1.5]
    assert list(feature["first_label"].bytes_list.value) == [b"y"]
    assert list(feature["id"].int64_list.value) == [1]


def test_the_next_model_reads_a_signatures_own_prediction_log():
    result = ChunkResult("tf", FilePosition("f.gz", 0), _records(2), {}, [],
                         prediction_logs=[b"log-0", b"log-1"])
    _, enriched = routing.enrich(result)
    feature = tf.train.Example.FromString(enriched[1]).features.feature
    assert list(feature["tf_prediction_log"].bytes_list.value) == [b"log-1"]


def test_in_a_pipeline_every_record_reaches_one_model():
    config = InferenceConfig(models=[ModelConfig(name="a"), ModelConfig(name="b")],
                             routing="ab")
    with beam.Pipeline() as pipeline:
        parts = (pipeline | beam.Create([(FilePosition("f", 0), _records(50))])
                 | beam.ParDo(routing.SplitAB(config)).with_outputs("0", "1"))
        both = (parts["0"], parts["1"]) | beam.Flatten() | beam.FlatMap(lambda c: c[1])
        assert_that(both | beam.combiners.Count.Globally(), equal_to([50]))
