"""Streaming inference on Beam's DirectRunner in streaming mode, fed by a TestStream:
windowed input, batching across bundles, a model swapped mid-stream through RunInference's
model side input, rows and their BigQuery schema, dead letters."""
import json

import apache_beam as beam
import pytest
import tensorflow as tf
import torch
from apache_beam import Pipeline, window
from apache_beam.ml.inference.base import ModelMetadata
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to
from apache_beam.transforms import WindowInto, util

from inference import streaming
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.io import rows
from tests import helpers
from tests.components import faulty_models

WINDOW = 10


class Constant(torch.nn.Module):
    """Outputs `value` for every record: tells which model version made a prediction."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.ones(x.shape[0], 1) * self.value


class BatchSize(torch.nn.Module):
    """Outputs the size of the batch each record came in."""

    def forward(self, x):
        return torch.ones(x.shape[0], 1) * x.shape[0]


def _save(module, path) -> str:
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


def _streaming_pipeline():
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    return Pipeline(options=options)


def _config(uri, **batching):
    return InferenceConfig(models=[ModelConfig(
        name="clf", uri=uri, inputs=InputSpec(features=["x"]), **batching)])


def _rows_equal(expected):
    """A matcher (it runs inside the pipeline) on rows projected to sorted tuples."""
    def check(actual):
        got = sorted(tuple(row[k] for k in sorted(row)) for row in actual)
        want = sorted(tuple(row[k] for k in sorted(row)) for row in expected)
        if got != want:
            raise BeamAssertException(f"rows differ:\n got {got}\nwant {want}")
    return check


def test_model_swapped_mid_stream_without_restart(tmp_path):
    """Window [0, 10) is served by model v1 (outputs 1), window [20, 30) by v2 (outputs 2),
    the switch arriving as a ModelMetadata on RunInference's side input: same pipeline,
    same DoFn, no restart. The first window's messages are JSON, the second's tf.Examples."""
    v1 = _save(Constant(1.0), tmp_path / "model_v1.pt")
    v2 = _save(Constant(2.0), tmp_path / "model_v2.pt")
    config = _config(v1, max_batch_size=8)
    stream = (TestStream(output_tags=["messages", "models"])
              .advance_watermark_to(0, tag="messages").advance_watermark_to(0, tag="models")
              .add_elements([window.TimestampedValue(ModelMetadata(v1, "v1"), 0)],
                            tag="models")
              .add_elements([window.TimestampedValue(json.dumps({"x": x}).encode(), x)
                             for x in (1, 2, 3)], tag="messages")
              .advance_watermark_to(20, tag="models")
              .add_elements([window.TimestampedValue(ModelMetadata(v2, "v2"), 20)],
                            tag="models")
              .advance_watermark_to(20, tag="messages")
              .advance_processing_time(5)
              .add_elements([window.TimestampedValue(helpers.example({"x": [float(x)]}), x)
                             for x in (21, 22, 23)], tag="messages")
              .advance_watermark_to(40, tag="models")
              .advance_watermark_to(40, tag="messages")
              .advance_processing_time(5)
              .advance_watermark_to_infinity(tag="messages")
              .advance_watermark_to_infinity(tag="models"))
    expected = [{"model": "clf", "event_time": f"1970-01-01T00:00:{x:02d}.000000Z",
                 "x": float(x), "output_0": 1.0 if x < 10 else 2.0}
                for x in (1, 2, 3, 21, 22, 23)]
    with _streaming_pipeline() as pipeline:
        inputs = pipeline | stream
        models = inputs["models"] | "ModelWindows" >> WindowInto(
            window.FixedWindows(WINDOW))
        outputs = streaming.build_pipeline(
            inputs["messages"], config, model_updates={"clf": models}, window_secs=WINDOW)
        assert_that(outputs.rows, _rows_equal(expected), label="rows")
        assert_that(outputs.dead_letters, equal_to([]), label="no dead letters")


def _hold_batching_keys(pipeline) -> list:
    """Holds the key that streaming BatchElements batches under, for the test's run.

    BatchElements (with max_batch_duration_secs) keys elements by a per-process object
    that Beam keeps alive only while it is the last shared object acquired. A Dataflow
    worker sets its DoFns up once, so the key lasts; the DirectRunner sets DoFns up again
    for every bundle and RunInference acquires its model in between, so each bundle would
    get a new key and its own batches. Holding the object gives the DirectRunner a
    long-lived worker's behaviour.
    """
    held = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            dofn = getattr(node.transform, "dofn", None)
            if isinstance(dofn, util.WithSharedKey):
                held.append(dofn.shared_handle.acquire(util.load_shared_key, "WithSharedKey"))

    pipeline.visit(Visitor())
    assert held, "no stateful BatchElements in the pipeline"
    return held


def _one_bundle_each(values, extra=()):
    stream = TestStream().advance_watermark_to(0)
    for x in values:
        stream = stream.add_elements(
            [window.TimestampedValue(json.dumps({"x": float(x)}).encode(), x)])
    for payload, at in extra:
        stream = stream.add_elements([window.TimestampedValue(payload, at)])
    return stream.advance_processing_time(60).advance_watermark_to_infinity()


def test_batches_span_bundles_with_max_batch_duration(tmp_path):
    """Each message arrives in its own bundle; `max_batch_duration_secs` in the ModelConfig
    makes Beam batch across bundles (stateful batching), so the model sees one batch of 4
    (it outputs the size of its batch), where plain batching sees 4 batches of 1. A
    message that is neither JSON nor a tf.Example is a dead letter."""
    uri = _save(BatchSize(), tmp_path / "batch_size.pt")

    def expected(batch):
        return [{"model": "clf", "event_time": f"1970-01-01T00:00:0{x}.000000Z",
                 "x": float(x), "output_0": batch} for x in range(4)]

    config = _config(uri, min_batch_size=4, max_batch_size=4, max_batch_duration_secs=30)
    with _streaming_pipeline() as pipeline:
        outputs = streaming.build_pipeline(
            pipeline | _one_bundle_each(range(4), [(b"{not json", 5)]), config,
            window_secs=WINDOW)
        assert_that(outputs.rows, _rows_equal(expected(4.0)), label="rows")
        assert_that(outputs.dead_letters | beam.Map(lambda d: (d.stage, d.error_type)),
                    equal_to([("parse", "MessageError")]), label="dead letters")
        held = _hold_batching_keys(pipeline)
    assert held

    per_bundle = _config(uri, min_batch_size=4, max_batch_size=4)
    with _streaming_pipeline() as pipeline:
        outputs = streaming.build_pipeline(pipeline | _one_bundle_each(range(4)), per_bundle,
                                           window_secs=WINDOW)
        assert_that(outputs.rows, _rows_equal(expected(1.0)), label="rows")


class PaddedWidth(torch.nn.Module):
    """Outputs the width its batch was padded to."""

    def forward(self, ids):
        return torch.ones(ids.shape[0], 1) * ids.shape[1]


def _length_and_width(result):
    for record, width in zip(result.records, result.outputs["output_0"]):
        ids = tf.train.Example.FromString(record).features.feature["ids"]
        yield len(ids.int64_list.value), float(width[0])


def test_length_buckets_in_streaming(tmp_path):
    """One batch of 4 token-id messages across bundles; with length_buckets=[3] the short
    ones are padded to 2 and the long ones to 6, not all to 6."""
    uri = _save(PaddedWidth(), tmp_path / "padded_width.pt")
    config = InferenceConfig(models=[ModelConfig(
        name="clf", uri=uri, min_batch_size=4, max_batch_size=4, max_batch_duration_secs=30,
        inputs=InputSpec(features=["ids"], dtype="int64", padding="longest"),
        length_feature="ids", length_buckets=[3])])
    stream = TestStream().advance_watermark_to(0)
    for at, length in enumerate((1, 5, 2, 6)):
        stream = stream.add_elements([window.TimestampedValue(
            json.dumps({"ids": [length] * length}).encode(), at)])
    stream = stream.advance_processing_time(60).advance_watermark_to_infinity()
    with _streaming_pipeline() as pipeline:
        outputs = streaming.build_pipeline(pipeline | stream, config, window_secs=WINDOW)
        assert_that(outputs.predictions["clf"] | beam.FlatMap(_length_and_width),
                    equal_to([(1, 2.0), (2, 2.0), (5, 6.0), (6, 6.0)]))
        held = _hold_batching_keys(pipeline)
    assert held


def test_a_watched_pattern_needs_no_side_input_and_no_windows(tmp_path):
    """`--model_pattern` is watched by each worker (`model_versions`), under any routing:
    no WatchFilePattern, no side input, no window step."""
    uri = _save(Constant(1.0), tmp_path / "model_v1.pt")
    keyed = InferenceConfig(routing="keyed", routing_feature="g", models=[
        ModelConfig(name=name, uri=uri, inputs=InputSpec(features=["x"]), keys=[name])
        for name in ("a", "b")])
    pipeline = _streaming_pipeline()
    streaming.build_pipeline(pipeline | TestStream().add_elements([b"{}"]), keyed,
                             model_updates={name: str(tmp_path / "*.pt") for name in "ab"},
                             window_secs=WINDOW, model_check_secs=5)
    transforms = pipeline.to_runner_api().components.transforms.values()
    names = [t.unique_name for t in transforms]
    assert any(n.endswith("RunInference[keyed]/BeamML_RunInference") for n in names)
    assert not [n for n in names if "WatchFilePattern" in n or n.endswith("/Window")
                or n == "Window"]
    assert not [t.unique_name for t in transforms if t.spec.urn == "beam:transform:pardo:v1"
                and "RunInference" in t.unique_name and _side_inputs(t)]


def _side_inputs(transform) -> dict:
    from apache_beam.portability.api import beam_runner_api_pb2
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    return dict(payload.side_inputs)


def test_json_messages_become_examples():
    example = __import__("tensorflow").train.Example.FromString(streaming.to_example(
        b'{"fare": 1.5, "trips": 3, "company": "x", "tags": ["a", "b"], "gone": null}'))
    feature = example.features.feature
    assert list(feature["fare"].float_list.value) == [1.5]
    assert list(feature["trips"].int64_list.value) == [3]
    assert list(feature["tags"].bytes_list.value) == [b"a", b"b"]
    assert "gone" not in feature
    serialized = helpers.example({"x": [1.0]})
    assert streaming.to_example(serialized) == serialized
    with pytest.raises(streaming.MessageError):
        streaming.to_example(b'{"x": [1, "a"]}')


def test_command_line_needs_a_sink_and_reads_model_patterns():
    args, beam_args = streaming.parse_args([
        "--input_subscription", "projects/p/subscriptions/s", "--output_topic",
        "projects/p/topics/t", "--inference_config", "c.json", "--model_pattern",
        "gs://b/models/*.pt", "--runner=DataflowRunner", "--region=us-central1"])
    assert args.model_pattern == ["gs://b/models/*.pt"]
    assert beam_args == ["--runner=DataflowRunner", "--region=us-central1"]
    assert streaming._model_patterns(args.model_pattern, _config("")) == {
        "clf": "gs://b/models/*.pt"}
    with pytest.raises(SystemExit):
        streaming.parse_args(["--input_topic", "t", "--inference_config", "c.json"])



def _same_records():
    records = [helpers.example({"x": [float(i % 7)], "id": [i], "group": ["ab"[i % 2]]})
               for i in range(40)]
    records.append(helpers.example({"x": [faulty_models.SLOW_MARKER], "id": [40],
                                    "group": ["a"]}))  # times out
    records.append(helpers.example({"x": [1.0], "id": [41], "group": ["z"]}))  # no model
    records.append(helpers.example({"id": [42], "group": ["b"]}))  # no x: preprocess
    return records


def _batch_run(tmp_path, config, records):
    from inference import bounded
    from inference.engine.models import create_handlers
    from inference.io import encoding
    from inference.io.dead_letters import read_failures
    from inference.observe import metrics
    handlers = create_handlers(config)
    path = str(tmp_path / "data.gz")
    helpers.write_tfrecords(path, records)
    plan = bounded.Plan(config, handlers, {"eval": [path]}, [
        bounded.Output(name, "eval", str(tmp_path / name / "logs"), encoding.encode_logs,
                       "PredictionLogs") for name in handlers], str(tmp_path / "failures"))
    pipeline = beam.Pipeline()
    plan.expand(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    predictions = set()
    for name in handlers:
        for log in helpers.read_prediction_logs(str(tmp_path / name / "logs-*.gz")):
            record = log.predict_log.request.inputs["examples"].string_val[0]
            value = tf.make_ndarray(log.predict_log.response.outputs["output_0"]).item()
            predictions.add((name, _id(record), round(value, 4)))
    dead = {(f.model, _id(f.record), f.stage)
            for f in read_failures(str(tmp_path / "failures-*.gz"))}
    figures = metrics.run_figures(result, config.models, ["eval"], 1.0)
    return predictions, dead, ({name: (f.predictions, f.failures)
                                for name, f in figures.models.items()},
                               sum(figures.routing_failures.values()))


def _id(record: bytes) -> int:
    return tf.train.Example.FromString(record).features.feature["id"].int64_list.value[0]


def _stream_run(config, records):
    stream = TestStream().advance_watermark_to(0)
    for at, record in enumerate(records):
        stream = stream.add_elements([window.TimestampedValue(record, at)])
    stream = stream.advance_processing_time(60).advance_watermark_to_infinity()
    _COLLECTED.clear()
    with _streaming_pipeline() as pipeline:
        outputs = streaming.build_pipeline(pipeline | stream, config, window_secs=WINDOW,
                                           row_spec=rows_lib_spec())
        _ = outputs.rows | "KeepRows" >> beam.Map(_collect, "rows")
        _ = outputs.dead_letters | "KeepDead" >> beam.Map(_collect, "dead")
    rows, dead = _COLLECTED.get("rows", []), _COLLECTED.get("dead", [])
    # Counted from what came out: the streaming DirectRunner keeps one bundle's metrics.
    counts = ({m.name: (sum(r["model"] == m.name for r in rows),
                        sum(f.model == m.name for f in dead)) for m in config.models},
              sum(not f.model for f in dead))
    predictions = {(row["model"], row["id"], round(row["output_0"], 4)) for row in rows}
    return predictions, {(f.model, _id(f.record), f.stage) for f in dead}, counts


_COLLECTED = {}  # what a streaming run's steps saw (steps are pickled; this is by reference)


def _collect(element, key):
    _COLLECTED.setdefault(key, []).append(element)


def rows_lib_spec():
    return rows.RowSpec.parse("id:INTEGER", "output_0:FLOAT")


@pytest.mark.parametrize("routing", ["ab", "keyed"])
def test_streaming_and_the_bulk_inferrer_agree(tmp_path, routing):
    """The same records, configuration (A/B or keyed routing, a timeout) and models,
    through the bounded plan and through the streaming entry point: the same predictions,
    the same dead letters (timeout, routing, preprocess) and the same counts."""
    uri = str(tmp_path / "sum.pt")
    torch.save(faulty_models.SumModel().state_dict(), uri)
    options = {"model_class": "tests.components.faulty_models.SumModel",
               "model_params": {"sleep_secs": 5.0}}
    models = [ModelConfig(name=name, uri=uri, inputs=InputSpec(features=["x"]),
                          max_batch_size=8, options=options,
                          keys=[key] if routing == "keyed" else [])
              for name, key in (("one", "a"), ("two", "b"))]
    config = InferenceConfig(models=models, routing=routing, routing_feature=(
        "group" if routing == "keyed" else "id"), timeout_secs=1)
    records = _same_records()
    batch = _batch_run(tmp_path, config, records)
    streamed = _stream_run(config, records)
    assert streamed[0] == batch[0] and len(batch[0]) == len(records) - (
        3 if routing == "keyed" else 2)
    assert streamed[1] == batch[1]
    assert {stage for _, _, stage in batch[1]} >= {"timeout", "preprocess"}
    assert streamed[2] == batch[2]


def test_options_streaming_cannot_honour_are_refused_before_the_pipeline_is_built(tmp_path):
    uri = _save(Constant(1.0), tmp_path / "m.pt")
    keyed = InferenceConfig(routing="keyed", routing_feature="g", group_by_key=True, models=[
        ModelConfig(name="m", uri=uri, inputs=InputSpec(features=["x"]), keys=["a"])])
    pipeline = _streaming_pipeline()
    messages = pipeline | TestStream().add_elements([b"{}"])
    with pytest.raises(ConfigError, match=r"(?s)model updates from a side input with "
                                          r"routing='keyed'.*group_by_key needs windows"):
        streaming.build_pipeline(messages, keyed, model_updates={"m": messages},
                                 window_secs=None)
    skipping = _config(uri)
    skipping.skip_unreadable_files = True
    with pytest.raises(ConfigError, match="skip_unreadable_files is for bounded runs"):
        streaming.build_pipeline(messages, skipping)

