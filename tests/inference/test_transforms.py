"""The engine's transforms on their own: InferExamples per routing, Encode counting what it
writes and failing only the records it cannot encode, CountFailures counting every stage."""
import apache_beam as beam
import joblib
import numpy as np
import torch
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to

from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.data.failures import Failure
from inference.data.results import ChunkResult, FilePosition
from inference.engine.models import create_handlers
from inference.engine.transforms import Encode, InferExamples
from inference.io.dead_letters import CountFailures
from inference.observe import metrics
from tests import helpers


def _counters(result) -> dict:
    found = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    return {r.key.metric.name: r.committed for r in found["counters"]}


def _chunks():
    good = helpers.float_examples(np.arange(6, dtype=np.float32).reshape(6, 1), ["x"])
    return [(FilePosition("f.gz", 0), good[:3]), (FilePosition("f.gz", 3), good[3:] + [b"junk"])]


def _config(tmp_path, routing="shadow"):
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "id.pt"))
    return InferenceConfig(routing=routing, models=[
        ModelConfig(name=name, uri=str(tmp_path / "id.pt"), inputs=InputSpec(features=["x"]))
        for name in ("a", "b")])


def test_shadow_every_model_gets_every_record_and_failures_carry_the_split(tmp_path):
    config = _config(tmp_path)
    with beam.Pipeline() as pipeline:
        out = (pipeline | beam.Create(_chunks())
               | InferExamples(create_handlers(config), config, split="eval"))
        for name in ("a", "b"):
            assert_that(out.predictions[name] | f"Values[{name}]" >> beam.FlatMap(
                lambda r: r.outputs["output_0"][:, 0].tolist()),
                equal_to([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]), label=f"predictions[{name}]")
        assert_that(out.failures | beam.Map(lambda f: (f.model, f.stage, f.split, f.source)),
                    equal_to([("a", "decode", "eval", "f.gz:record 6"),
                              ("b", "decode", "eval", "f.gz:record 6")]), label="failures")


def test_sequence_feeds_the_next_model_the_previous_outputs(tmp_path):
    config = _config(tmp_path, "sequence")
    config.models[1].inputs = InputSpec(features=["a_output_0"])
    with beam.Pipeline() as pipeline:
        out = (pipeline | beam.Create(_chunks())
               | InferExamples(create_handlers(config), config))
        assert_that(out.predictions["b"] | beam.FlatMap(
            lambda r: r.outputs["output_0"][:, 0].tolist()),
            equal_to([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))


def test_chunks_larger_than_the_smallest_batch_are_inferred_whole(tmp_path):
    """Chunks of more records than min_batch_size, to a model that refuses 0 rows."""
    from sklearn.linear_model import LinearRegression
    x = np.arange(20, dtype=np.float32).reshape(20, 1)
    joblib.dump(LinearRegression().fit(x, 2 * x[:, 0]), str(tmp_path / "m.joblib"))
    config = InferenceConfig(models=[ModelConfig(
        name="m", framework="sklearn", uri=str(tmp_path / "m.joblib"), min_batch_size=2,
        inputs=InputSpec(features=["x"]), options={"trusted": True})])
    records = helpers.float_examples(x, ["x"])
    with beam.Pipeline() as pipeline:
        out = (pipeline | beam.Create([(FilePosition("f.gz", 0), records[:10]),
                                       (FilePosition("f.gz", 10), records[10:])])
               | InferExamples(create_handlers(config), config))
        assert_that(out.predictions["m"] | beam.FlatMap(lambda r: r.outputs["output_0"]
                                                         .round().tolist()),
                    equal_to([2.0 * i for i in range(20)]))
        assert_that(out.failures, equal_to([]), label="no failures")


def test_keyed_chunks_larger_than_the_smallest_batch_are_inferred_whole(tmp_path):
    config = _config(tmp_path, "keyed")
    config.routing_feature = "k"
    for model, key in zip(config.models, ("a", "b")):
        model.keys, model.min_batch_size = [key], 2
    records = [helpers.example({"x": [float(i)], "k": ["ab"[i % 2]]}) for i in range(20)]
    with beam.Pipeline() as pipeline:
        out = (pipeline | beam.Create([(FilePosition("f.gz", 0), records[:10]),
                                       (FilePosition("f.gz", 10), records[10:])])
               | InferExamples(create_handlers(config), config))
        for name, first in (("a", 0), ("b", 1)):
            assert_that(out.predictions[name] | f"Values[{name}]" >> beam.FlatMap(
                lambda r: r.outputs["output_0"][:, 0].tolist()),
                equal_to([float(i) for i in range(first, 20, 2)]), label=f"predictions[{name}]")


def _encode_output_0(result: ChunkResult):
    """An encoder of real numbers: a complex one fails, as an unencodable output does."""
    encoded = []
    for value in result.outputs["output_0"]:
        if np.iscomplexobj(value):
            raise ValueError("complex values do not encode")
        encoded.append(b"%g" % float(value))
    return encoded


def test_encode_counts_what_it_writes_and_fails_only_what_it_cannot(tmp_path):
    column = np.empty(3, dtype=object)
    column[:] = [np.float32(1.0), np.complex64(1 + 1j), np.float32(3.0)]
    result = ChunkResult("m", FilePosition("f.gz", 0), [b"r0", b"r1", b"r2"],
                         {"output_0": column}, [])
    with beam.Pipeline() as pipeline:
        encoded = pipeline | beam.Create([result]) | Encode(_encode_output_0, "eval")
        assert_that(encoded.main, equal_to([[b"1", b"3"]]), label="encoded")
        assert_that(encoded.failures | beam.Map(lambda f: (f.stage, f.record, f.source)),
                    equal_to([("encoding", b"r1", "f.gz:record 1")]), label="failures")
    assert _counters(pipeline.result) == {f"{metrics.PREDICTIONS}|m|eval": 2}


def test_failures_are_counted_by_model_split_and_stage_as_the_records_they_stand_for():
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create([Failure("decode", "E", "m", model="a", split="s"),
                                     Failure("read", "E", "m", split="s", lost=40)])
             | beam.ParDo(CountFailures()))
    assert _counters(pipeline.result) == {f"{metrics.FAILURES}|a|s|decode": 1,
                                          f"{metrics.FAILURES}||s|read": 40}
