"""Streaming inference: Pub/Sub in, the same ExampleModelHandlers through Beam's
RunInference, JSON predictions to Pub/Sub or typed rows to BigQuery out.

    python -m inference.streaming \\
        --input_subscription projects/P/subscriptions/S \\
        --output_topic projects/P/topics/T \\
        --inference_config config.json \\
        [--model_pattern 'gs://bucket/models/*.pt'] \\
        [--bigquery_table P:dataset.table --row_outputs output_0:FLOAT] \\
        [--dead_letter_topic projects/P/topics/D] \\
        --runner=DataflowRunner --project=P --region=R ...     (any Beam flag)

Messages hold serialized tf.Examples, or JSON objects (`{"fare": 12.5, "company": "x"}`)
which become tf.Examples (numbers -> float_list, integers -> int64_list, strings ->
bytes_list, lists of them likewise). The configuration is the `InferenceConfig` JSON the
BulkInferrer takes; every model sees every message.

Model updates without a restart: with `--model_pattern`, Beam's `WatchFilePattern` polls
the pattern and RunInference swaps to the newest matching file (a side input of
`ModelMetadata`); `ExampleModelHandler.update_model_path` hands the new path to the
framework's handler. Upload each new version under a new file name. Windows
(`--window_secs`) are what the side input is read per, so a new model serves from the next
window on. `max_batch_duration_secs` in a model's config batches across bundles.

`build_pipeline(messages, ...)` builds everything after the source, so tests feed it a
`TestStream`.
"""
import argparse
import base64
import json
import logging
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
import tensorflow as tf
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, \
    StandardOptions
from apache_beam.transforms import window

from inference import rows as rows_lib
from inference.config import ConfigError, InferenceConfig
from inference.failures import Failure
from inference.handler import ExampleModelHandler
from inference.transforms import create_handlers

INPUT_FORMATS = ("auto", "example", "json")
DEAD_LETTERS = "dead_letters"
DEFAULT_WINDOW_SECS = 60
DEFAULT_MODEL_CHECK_SECS = 300


class MessageError(ValueError):
    """A message that is neither a serialized tf.Example nor a JSON object of features."""


def json_to_example(obj: Mapping[str, Any]) -> bytes:
    """A JSON object of features as a serialized tf.Example (null values are left out)."""
    if not isinstance(obj, Mapping):
        raise MessageError(f"want a JSON object of features, got {type(obj).__name__}")
    feature = {}
    for name, value in obj.items():
        values = value if isinstance(value, list) else [value]
        values = [v for v in values if v is not None]
        if not values:
            continue
        if all(isinstance(v, bool) or isinstance(v, int) for v in values):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(
                value=[int(v) for v in values]))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(
                value=[float(v) for v in values]))
        elif all(isinstance(v, str) for v in values):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode("utf-8") for v in values]))
        else:
            raise MessageError(f"feature {name!r}: values must be all numbers or all "
                               f"strings, got {value!r}")
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def to_example(message: bytes, input_format: str = "auto") -> bytes:
    """A message's payload as a serialized tf.Example.

    "json": a JSON object; "example": a serialized tf.Example (checked); "auto": JSON when
    the payload starts with `{`, else a serialized tf.Example.
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format={input_format!r}: choose one of {INPUT_FORMATS}")
    if isinstance(message, str):
        message = message.encode("utf-8")
    if input_format == "json" or (input_format == "auto" and message.lstrip()[:1] == b"{"):
        try:
            obj = json.loads(message)
        except ValueError as e:
            raise MessageError(f"not valid JSON: {e}") from e
        return json_to_example(obj)
    try:
        tf.train.Example.FromString(message)
    except Exception as e:  # pylint: disable=broad-except
        raise MessageError(f"not a serialized tf.Example: {e}") from e
    return message


def dead_letter(stage: str, error: Union[BaseException, str], record: bytes = b"",
                model: str = "") -> Dict[str, Any]:
    """A JSON-ready dead letter: why, where, and the original payload (base64)."""
    if isinstance(error, BaseException):
        error_type, message = type(error).__name__, str(error)
    else:
        error_type, message = "Error", str(error)
    return {"stage": stage, "error_type": error_type, "message": message[:1000],
            "model": model, "record_base64": base64.b64encode(record or b"").decode("ascii")}


class _ParseMessages(beam.DoFn):

    def __init__(self, input_format: str):
        self._format = input_format

    def process(self, message):
        data = message.data if hasattr(message, "data") else message  # PubsubMessage
        try:
            yield to_example(data, self._format)
        except MessageError as e:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter("parse", e, data))


class _ToRows(beam.DoFn):
    """(event time, a message's results) -> rows; failed records and rows that do not fit
    -> dead letters."""

    def __init__(self, spec: rows_lib.RowSpec, output_names: Sequence[str], model_name: str):
        self._spec, self._output_names, self._model = spec, tuple(output_names), model_name

    def setup(self):
        self._rows = beam.metrics.Metrics.counter("streaming", f"rows[{self._model}]")
        self._failed = beam.metrics.Metrics.counter("streaming", f"failures[{self._model}]")

    def process(self, keyed):
        event_time, results = keyed
        for result in results:
            yield from self._row(event_time, result)

    def _row(self, event_time, result):
        failure = result.inference
        if isinstance(failure, Failure):
            self._failed.inc()
            letter = dead_letter(failure.stage, failure.message, failure.record, self._model)
            letter["error_type"] = failure.error_type
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
            return
        try:
            row = self._spec.to_row(result, self._output_names, event_time)
        except rows_lib.RowError as e:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(
                "rows", e, result.example if isinstance(result.example, bytes) else b"",
                self._model))
            return
        self._rows.inc()
        yield row


class StreamOutputs(NamedTuple):
    """What `build_pipeline` returns."""
    # model name -> PCollection[(event time in seconds, [PredictionResult])]
    predictions: Dict[str, beam.PCollection]
    rows: beam.PCollection  # every model's rows (dicts, see inference.rows)
    dead_letters: beam.PCollection  # dicts, see dead_letter()


ModelUpdates = Mapping[str, Union[str, beam.PCollection]]


def build_pipeline(messages: beam.PCollection,
                   config: InferenceConfig,
                   handlers: Optional[Mapping[str, ExampleModelHandler]] = None,
                   model_updates: Optional[ModelUpdates] = None,
                   row_spec: Optional[rows_lib.RowSpec] = None,
                   window_secs: Optional[float] = DEFAULT_WINDOW_SECS,
                   input_format: str = "auto",
                   model_check_secs: float = DEFAULT_MODEL_CHECK_SECS) -> StreamOutputs:
    """Everything after the source: parse, window, RunInference per model, rows.

    messages: PCollection of message payloads (bytes) or PubsubMessages.
    handlers: model name -> handler; by default built from `config` (each model's `uri`).
    model_updates: model name -> a file pattern to watch (Beam's WatchFilePattern), or a
      PCollection of `ModelMetadata` (`model_id` = the new model's path), the side input
      RunInference swaps models from.
    window_secs: fixed event-time windows (None: the global window, no model updates
      on runners that read side inputs per window).
    """
    config.validate()
    handlers = dict(handlers) if handlers is not None else create_handlers(config)
    model_updates = dict(model_updates or {})
    unknown = sorted(set(model_updates) - set(handlers))
    if unknown:
        raise ConfigError(f"model updates for unknown model(s) {unknown}; "
                          f"models: {sorted(handlers)}")
    row_spec = row_spec or rows_lib.RowSpec.for_config(config)

    if window_secs:
        messages = messages | "Window" >> beam.WindowInto(window.FixedWindows(window_secs))
    parsed = messages | "Parse" >> beam.ParDo(_ParseMessages(input_format)).with_outputs(
        DEAD_LETTERS, main="examples")
    # Keyed by the message's event time, which the rows keep (batching re-stamps elements);
    # each message is a chunk of one record (see inference.handler).
    examples = parsed.examples | "KeyByEventTime" >> beam.Map(
        lambda example, ts=beam.DoFn.TimestampParam: (ts.micros / 1e6, [example]))

    predictions, row_pcolls, dead = {}, [], [parsed[DEAD_LETTERS]]
    for name, handler in handlers.items():
        update = model_updates.get(name)
        kwargs: Dict[str, Any] = {}
        if isinstance(update, str):
            kwargs = {"watch_model_pattern": update, "interval": model_check_secs}
        elif update is not None:
            kwargs = {"model_metadata_pcoll": update}
        # KeyedModelHandler hands model updates to the handler (update_model_path).
        results = examples | f"RunInference[{name}]" >> RunInference(
            KeyedModelHandler(handler), **kwargs)
        predictions[name] = results
        converted = results | f"ToRows[{name}]" >> beam.ParDo(
            _ToRows(row_spec, handler.output_names, name)).with_outputs(
                DEAD_LETTERS, main="rows")
        row_pcolls.append(converted.rows)
        dead.append(converted[DEAD_LETTERS])
    pipeline = parsed.examples.pipeline
    return StreamOutputs(
        predictions,
        row_pcolls | "FlattenRows" >> beam.Flatten(pipeline=pipeline),
        dead | "FlattenDeadLetters" >> beam.Flatten(pipeline=pipeline))


def latest_model(pattern: str) -> str:
    """The newest file matching `pattern` (what WatchFilePattern starts from)."""
    paths = [p for p in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(p)]
    if not paths:
        raise ConfigError(f"no model file matches {pattern!r}")
    return max(paths, key=lambda p: (tf.io.gfile.stat(p).mtime_nsec, p))


def bigquery_sink(table: str, spec: rows_lib.RowSpec,
                  method: str = "STREAMING_INSERTS") -> beam.io.WriteToBigQuery:
    """WriteToBigQuery of the rows, with their explicit TableSchema; the table is created
    when missing and appended to."""
    return beam.io.WriteToBigQuery(
        table,
        schema=spec.bigquery_schema(),
        create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
        write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
        method=method)


def _model_patterns(values: Sequence[str], config: InferenceConfig) -> Dict[str, str]:
    """`--model_pattern PATTERN` (every model) or `--model_pattern NAME=PATTERN`."""
    names = [m.name for m in config.models]
    patterns = {}
    for value in values:
        name, sep, pattern = value.partition("=")
        if sep and name in names:
            patterns[name] = pattern
        elif len(names) == 1:
            patterns[names[0]] = value
        else:
            raise ConfigError(f"--model_pattern {value!r}: with several models, write "
                              f"NAME=PATTERN with NAME one of {names}")
    return patterns


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input_subscription", help="projects/P/subscriptions/S")
    source.add_argument("--input_topic", help="projects/P/topics/T (a subscription is made)")
    parser.add_argument("--inference_config", required=True,
                        help="InferenceConfig JSON file (the BulkInferrer's configuration)")
    parser.add_argument("--model_pattern", action="append", default=[],
                        help="file pattern of model versions to watch: PATTERN, or "
                             "NAME=PATTERN per model; the newest file serves")
    parser.add_argument("--model_check_secs", type=float, default=DEFAULT_MODEL_CHECK_SECS)
    parser.add_argument("--output_topic", help="projects/P/topics/T: JSON rows")
    parser.add_argument("--bigquery_table", help="PROJECT:DATASET.TABLE: typed rows")
    parser.add_argument("--bigquery_method", default="STREAMING_INSERTS",
                        choices=["STREAMING_INSERTS", "STORAGE_WRITE_API"])
    parser.add_argument("--row_features", default=None,
                        help="features copied into rows: name[:TYPE],... (default: the "
                             "models' input features, FLOAT)")
    parser.add_argument("--row_outputs", default=None,
                        help="outputs: name[:FLOAT|ARRAY<FLOAT>|...],... (required for "
                             "BigQuery; default for JSON: every output as it comes)")
    parser.add_argument("--dead_letter_topic", help="projects/P/topics/T: failed messages")
    parser.add_argument("--input_format", default="auto", choices=INPUT_FORMATS)
    parser.add_argument("--window_secs", type=float, default=DEFAULT_WINDOW_SECS)
    args, beam_args = parser.parse_known_args(argv)
    if not (args.output_topic or args.bigquery_table):
        parser.error("give --output_topic and/or --bigquery_table")
    return args, beam_args


def run(argv: Optional[List[str]] = None, save_main_session: bool = False):
    args, beam_args = parse_args(argv)
    with tf.io.gfile.GFile(args.inference_config) as f:
        config = InferenceConfig.from_json(f.read()).validate()
    patterns = _model_patterns(args.model_pattern, config)
    handlers = create_handlers(config, {name: latest_model(pattern)
                                        for name, pattern in patterns.items()})
    if args.row_features is not None or args.row_outputs is not None:
        spec = rows_lib.RowSpec.parse(args.row_features or "", args.row_outputs)
        if args.row_features is None:
            spec.features = rows_lib.RowSpec.for_config(config).features
    else:
        spec = rows_lib.RowSpec.for_config(config)
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    options.view_as(SetupOptions).save_main_session = save_main_session
    sink = bigquery_sink(args.bigquery_table, spec, args.bigquery_method) \
        if args.bigquery_table else None  # builds (and checks) the schema before starting

    pipeline = beam.Pipeline(options=options)
    messages = pipeline | "ReadFromPubSub" >> beam.io.ReadFromPubSub(
        subscription=args.input_subscription, topic=args.input_topic)
    outputs = build_pipeline(messages, config, handlers, patterns, spec, args.window_secs,
                             args.input_format, args.model_check_secs)
    if args.output_topic:
        _ = (outputs.rows
             | "RowsToJson" >> beam.Map(rows_lib.to_json)
             | "WriteToPubSub" >> beam.io.WriteToPubSub(args.output_topic))
    if sink is not None:
        _ = outputs.rows | "WriteToBigQuery" >> sink
    if args.dead_letter_topic:
        _ = (outputs.dead_letters
             | "DeadLettersToJson" >> beam.Map(rows_lib.to_json)
             | "WriteDeadLetters" >> beam.io.WriteToPubSub(args.dead_letter_topic))
    else:
        _ = outputs.dead_letters | "LogDeadLetters" >> beam.Map(_log_dead_letter)
    return pipeline.run()


def _log_dead_letter(letter):
    logging.warning("dead letter: %s", {k: v for k, v in letter.items()
                                         if k != "record_base64"})


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
