"""Streaming inference: Pub/Sub in, the engine's one core transform (`InferExamples`), JSON
predictions to Pub/Sub or typed rows to BigQuery out.

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
BulkInferrer takes, and it means the same here: routing (shadow, ab, keyed, sequence),
fractions, keys, timeouts, dead letters and counts go through the same transform; an
option streaming cannot honour is refused before the pipeline is built.

Model updates without a restart: with `--model_pattern`, the newest file matching the
pattern serves, and every `--model_check_secs` each worker looks for a newer one, loads it
through the trust gate and serves it from its next batch on; a version that cannot load is
logged and counted (`model_version_failures`) while the one serving goes on (see
`inference.engine.model_versions`). Upload each new version under a new file name, or
write it elsewhere and move it in. `max_batch_duration_secs` in a model's config batches
across bundles.

`--attributes_to_row request_id,...` copies message attributes into each record (string
features) and so into its row and any dead letter: what joins a prediction back to its
request. `--id_attribute` is Pub/Sub's id_label where the runner de-duplicates (Dataflow).
`run` waits where the runner runs in this process, until SIGINT / SIGTERM cancel the
pipeline; on Dataflow it returns once the job is submitted (`--wait`: waits).

Each message is a chunk of one record whose origin is its event time, which the rows keep
(batching re-stamps elements). `build_pipeline(messages, ...)` builds everything after the
source, so tests feed it a `TestStream`.
"""
import argparse
import functools
import json
import logging
import signal
import threading
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions
from apache_beam.transforms import window

from inference import arguments
from inference.config import ConfigError, InferenceConfig
from inference.data import examples
from inference.data.failures import FAILURES_TAG, Failure
from inference.data.results import EventTime
from inference.engine import model_versions
from inference.engine.handler import ExampleModelHandler
from inference.engine.models import create_handlers
from inference.engine.transforms import Encode, InferExamples, ModelUpdates, flatten
from inference.io import rows as rows_lib
from inference.io.dead_letters import CountFailures, DeadLetters
from inference.io.pubsub import PublishDeadLetters

INPUT_FORMATS = ("auto", "example", "json")
DEFAULT_WINDOW_SECS = 60
DEFAULT_MODEL_CHECK_SECS = 60
STOP_TIMEOUT_SECS = 10


class MessageError(ValueError):
    """A message that is neither a serialized tf.Example nor a JSON object of features."""


def json_to_example(obj: Mapping[str, Any]) -> bytes:
    """A JSON object of features as a serialized tf.Example (null values are left out)."""
    if not isinstance(obj, Mapping):
        raise MessageError(f"want a JSON object of features, got {type(obj).__name__}")
    features = {}
    for name, value in obj.items():
        values = [v for v in (value if isinstance(value, list) else [value]) if v is not None]
        if not values:
            continue
        if all(isinstance(v, (bool, int)) for v in values):
            features[name] = [int(v) for v in values]
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            features[name] = [float(v) for v in values]
        elif all(isinstance(v, str) for v in values):
            features[name] = [v.encode("utf-8") for v in values]
        else:
            raise MessageError(f"feature {name!r}: values must be all numbers or all "
                               f"strings, got {value!r}")
    return examples.serialize(features)


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
        examples.parse(message)
    except Exception as e:
        raise MessageError(f"not a serialized tf.Example: {e}") from e
    return message


def with_attributes(record: bytes, attributes: Mapping[str, str],
                    names: Sequence[str]) -> bytes:
    """The serialized tf.Example `record` with the message attributes `names` added as
    string features (an attribute the message lacks is left out), so that they travel
    with the record to its row and to any dead letter."""
    found = {name: [attributes[name]] for name in names if name in attributes}
    if not found:
        return record
    clash = sorted(set(found) & set(examples.parse(record).features.feature))
    if clash:
        raise MessageError(f"attribute(s) {clash} are also features of the message; rename "
                           f"one or the other (--attributes_to_row copies attributes into "
                           f"the record)")
    return examples.with_features(record, found)


class _ParseMessages(beam.DoFn):
    """A message -> a chunk (event time, [its tf.Example]), or a dead letter (stage parse)
    as `dead_letters` makes it of the Failure.

    attributes: the names of the message attributes copied into the tf.Example (the
      messages are PubsubMessages then, else their payloads)."""

    def __init__(self, input_format: str, attributes: Sequence[str],
                 dead_letters: DeadLetters):
        self._format = input_format
        self._attributes = list(attributes)
        self._dead_letters = dead_letters

    def process(self, message, timestamp=beam.DoFn.TimestampParam):
        data = message.data if hasattr(message, "data") else message  # PubsubMessage
        try:
            record = to_example(data, self._format)
            if self._attributes:
                record = with_attributes(record, message.attributes or {}, self._attributes)
            yield EventTime(timestamp.micros / 1e6), [record]
        except MessageError as e:
            dead = self._dead_letters(Failure.from_exception(
                "parse", e, data if isinstance(data, bytes) else str(data).encode(),
                source=_describe(message, self._attributes)))
            if dead is not None:
                yield beam.pvalue.TaggedOutput(FAILURES_TAG, dead)

    def finish_bundle(self):
        self._dead_letters.finish()


def _describe(message, attributes: Sequence[str]) -> str:
    """A message as a dead letter's source: its id and the attributes kept in rows."""
    kept = {name: message.attributes[name] for name in attributes
            if name in (getattr(message, "attributes", None) or {})}
    message_id = getattr(message, "message_id", None)
    parts = ([f"message {message_id}"] if message_id else []) + (
        [json.dumps(kept, sort_keys=True)] if kept else [])
    return " ".join(parts)


class StreamOutputs(NamedTuple):
    """What `build_pipeline` returns."""
    # model name -> PCollection[ChunkResult], each with its failures (which are also in
    # dead_letters)
    predictions: Dict[str, beam.PCollection]
    rows: beam.PCollection  # every model's rows (dicts, see inference.io.rows), or encode_row's
    # Failures, counted, or what build_pipeline's dead_letters made of them (nothing when
    # it delivers them itself)
    dead_letters: beam.PCollection


def build_pipeline(messages: beam.PCollection,
                   config: InferenceConfig,
                   handlers: Optional[Mapping[str, ExampleModelHandler]] = None,
                   model_updates: Optional[ModelUpdates] = None,
                   row_spec: Optional[rows_lib.RowSpec] = None,
                   window_secs: Optional[float] = DEFAULT_WINDOW_SECS,
                   input_format: str = "auto",
                   model_check_secs: float = DEFAULT_MODEL_CHECK_SECS,
                   attributes: Sequence[str] = (),
                   encode_row: Optional[Callable[[Dict[str, Any]], Any]] = None,
                   dead_letters: Optional[DeadLetters] = None) -> StreamOutputs:
    """Everything after the source: parse, window, InferExamples, rows.

    messages: PCollection of message payloads (bytes) or PubsubMessages (needed for
      `attributes`: the attributes copied into each record, and so into its row when
      `row_spec` names them).
    handlers: model name -> handler; by default built from `config` (each model's `uri`).
    model_updates: see `inference.engine.transforms.ModelUpdates`.
    window_secs: fixed event-time windows, applied with group_by_key or model updates from
      a side input (None: the global window; runners read side inputs per window).
    encode_row: what `rows` holds instead of the rows (e.g. their JSON for Pub/Sub),
      encoded in the step that makes them.
    dead_letters: what the steps that make failures do with them (see `DeadLetters`; e.g.
      `pubsub.PublishDeadLetters`); by default they count them, for `dead_letters`.
    """
    config.validate(bounded=False)
    handlers = dict(handlers) if handlers is not None else create_handlers(config)
    if not config.max_models_per_worker_hint:  # with it, Beam's model manager evicts them
        handlers = {name: handler.held() for name, handler in handlers.items()}
    model_updates = dict(model_updates or {})
    problems = []
    unknown = sorted(set(model_updates) - set(handlers))
    if unknown:
        problems.append(f"model updates for unknown model(s) {unknown}; models: "
                        f"{sorted(handlers)}")
    side_inputs = [name for name, update in model_updates.items()
                   if not isinstance(update, str)]
    if side_inputs and config.routing == "keyed":
        problems.append("model updates from a side input with routing='keyed': Beam's "
                        "KeyedModelHandler takes per-key paths (KeyModelPathMapping); watch "
                        "a file pattern per model instead")
    if config.group_by_key and not window_secs:
        problems.append("group_by_key needs windows (--window_secs): in the global window a "
                        "GroupByKey never fires on a stream")
    if problems:
        raise ConfigError("Invalid streaming configuration:\n  - " + "\n  - ".join(problems))
    row_spec = row_spec or rows_lib.RowSpec.for_config(config)

    # Windows are what side inputs and group_by_key are read per; without them a window
    # step is one more step per bundle and changes no output.
    if window_secs and (side_inputs or config.group_by_key):
        messages = messages | "Window" >> beam.WindowInto(window.FixedWindows(window_secs))
    # The local runner runs every step once per bundle of a few messages, empty or not, so
    # failures are counted and encoded where they are made, and each model's results are
    # split from their failures, made rows and encoded in one step.
    dead_letters = dead_letters or DeadLetters()
    parsed = messages | "Parse" >> beam.ParDo(_ParseMessages(
        input_format, attributes, dead_letters)).with_outputs(FAILURES_TAG, main="chunks")
    inferred = parsed.chunks | "Infer" >> InferExamples(handlers, config,
                                                         model_updates=model_updates,
                                                         model_check_secs=model_check_secs,
                                                         split_failures=False)
    rows = []
    dead = [parsed[FAILURES_TAG],
            inferred.failures | "CountDeadLetters" >> beam.ParDo(
                CountFailures(dead_letters=dead_letters))]
    for name, results in inferred.predictions.items():
        encoded = results | f"ToRows[{name}]" >> Encode(
            functools.partial(_rows, row_spec, encode_row), each=True,
            dead_letters=dead_letters)
        rows.append(encoded.main)
        dead.append(encoded[FAILURES_TAG])
    pipeline = messages.pipeline
    return StreamOutputs(inferred.predictions, flatten(rows, "FlattenRows", pipeline),
                         flatten(dead, "FlattenDeadLetters", pipeline))


def _rows(spec: rows_lib.RowSpec, encode: Optional[Callable[[Dict[str, Any]], Any]],
          result) -> List[Any]:
    """A ChunkResult's rows, stamped with its chunk's event time, encoded by `encode`."""
    origin = result.origin
    made = spec.to_rows(result, timestamp=origin.seconds if isinstance(origin, EventTime)
                        else None)
    return made if encode is None else [encode(row) for row in made]


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
    arguments.add_config(parser, "the BulkInferrer's configuration")
    parser.add_argument("--model_pattern", action="append", default=[],
                        help="file pattern of model versions to watch: PATTERN, or "
                             "NAME=PATTERN per model; the newest file serves, and a newer "
                             "one from each worker's next check on")
    parser.add_argument("--model_check_secs", type=float, default=DEFAULT_MODEL_CHECK_SECS)
    parser.add_argument("--output_topic", help="projects/P/topics/T: JSON rows")
    parser.add_argument("--bigquery_table", help="PROJECT:DATASET.TABLE: typed rows")
    parser.add_argument("--bigquery_method", default="STREAMING_INSERTS",
                        choices=["STREAMING_INSERTS", "STORAGE_WRITE_API"])
    arguments.add_rows(parser)
    parser.add_argument("--attributes_to_row", default="",
                        help="message attributes copied into each row (STRING columns), "
                             "e.g. request_id: what joins a prediction back to its request")
    parser.add_argument("--id_attribute", default=None,
                        help="the attribute that identifies a message: Pub/Sub's id_label, "
                             "so that a message published or delivered twice is scored once "
                             "(Dataflow; the local runner does not de-duplicate)")
    parser.add_argument("--dead_letter_topic", help="projects/P/topics/T: failed messages")
    parser.add_argument("--input_format", default="auto", choices=INPUT_FORMATS)
    parser.add_argument("--window_secs", type=float, default=DEFAULT_WINDOW_SECS)
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                        help="wait until the pipeline ends or is stopped (SIGINT, SIGTERM "
                             "cancel it); default: wait where the runner runs in this "
                             "process, return once submitted on Dataflow")
    args, beam_args = parser.parse_known_args(argv)
    if not (args.output_topic or args.bigquery_table):
        parser.error("give --output_topic and/or --bigquery_table")
    args.attributes_to_row = [a.strip() for a in args.attributes_to_row.split(",")
                              if a.strip()]
    return args, beam_args


def build(argv: Optional[List[str]] = None, save_main_session: bool = False):
    """The streaming pipeline of a command line, not yet run; and the parsed arguments."""
    args, beam_args = parse_args(argv)
    config = arguments.read_config(args.inference_config, bounded=False)
    patterns = _model_patterns(args.model_pattern, config)
    handlers = create_handlers(config, {name: model_versions.newest_path(pattern)
                                        for name, pattern in patterns.items()})
    spec = arguments.row_spec(args, config)
    options = PipelineOptions(beam_args)
    options.view_as(StandardOptions).streaming = True
    options.view_as(SetupOptions).save_main_session = save_main_session
    sink = bigquery_sink(args.bigquery_table, spec, args.bigquery_method) \
        if args.bigquery_table else None  # builds (and checks) the schema before starting

    pipeline = beam.Pipeline(options=options)
    messages = pipeline | "ReadFromPubSub" >> pubsub_source(
        args, _is_dataflow(pipeline), type(pipeline.runner).__name__)
    # Rows go as JSON to Pub/Sub alone, as dicts where BigQuery takes them.
    json_rows = sink is None
    outputs = build_pipeline(
        messages, config, handlers, patterns, spec, args.window_secs, args.input_format,
        args.model_check_secs, args.attributes_to_row,
        encode_row=rows_lib.to_json if json_rows else None,
        dead_letters=PublishDeadLetters(_dead_letter_json, args.dead_letter_topic)
        if args.dead_letter_topic else _LoggedDeadLetters())
    if args.output_topic:
        as_json = outputs.rows if json_rows else outputs.rows | "RowsToJson" >> beam.Map(
            rows_lib.to_json)
        _ = as_json | "WriteToPubSub" >> beam.io.WriteToPubSub(args.output_topic)
    if sink is not None:
        _ = outputs.rows | "WriteToBigQuery" >> sink
    return pipeline, args


def pubsub_source(args, dedupes: bool, runner: str = "runner") -> beam.io.ReadFromPubSub:
    """The read of the command line's subscription or topic: PubsubMessages when rows take
    attributes; with `--id_attribute` as id_label where the runner de-duplicates
    (`dedupes`: Dataflow), else without it, warning (Beam's DirectRunner refuses it)."""
    id_label = args.id_attribute
    if id_label and not dedupes:
        logging.warning("--id_attribute %s: the %s does not de-duplicate Pub/Sub reads "
                        "(id_label); a message delivered twice is scored twice (rows carry "
                        "--attributes_to_row to tell them apart)", id_label, runner)
        id_label = None
    return beam.io.ReadFromPubSub(
        subscription=args.input_subscription, topic=args.input_topic, id_label=id_label,
        with_attributes=bool(args.attributes_to_row))


def run(argv: Optional[List[str]] = None, save_main_session: bool = False):
    """Builds and starts the pipeline of a command line. Where the runner runs it in this
    process (the local runner) it then waits until the pipeline is stopped: SIGINT or
    SIGTERM cancel it. On Dataflow it returns once the job is submitted (--wait: waits).
    Returns the PipelineResult."""
    pipeline, args = build(argv, save_main_session)
    result = pipeline.run()
    wait = args.wait if args.wait is not None else not _is_dataflow(pipeline)
    return wait_until_stopped(result) if wait else result


class _Stopped(Exception):
    """A stop signal arrived."""


def wait_until_stopped(result, stop_timeout_secs: float = STOP_TIMEOUT_SECS):
    """Waits for a running pipeline until it ends or SIGINT / SIGTERM arrives (then cancels
    it, see `cancel`). Signals are caught only on the main thread, where Python delivers
    them."""
    def stop(signum, _frame):
        raise _Stopped(signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result.wait_until_finish()
    except _Stopped as e:
        logging.info("%s: cancelling the pipeline", e)
        cancel(result, stop_timeout_secs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result


def cancel(result, timeout_secs: float = STOP_TIMEOUT_SECS):
    """Cancels a running pipeline, waiting at most `timeout_secs` for it to stop.

    Beam's DirectRunner stops its workers after their current step, which may be a Pub/Sub
    pull waiting up to 30 s for messages; the process may end before (its workers are
    daemon threads), and a pull cut short acknowledges nothing, so Pub/Sub delivers its
    messages again. Messages it acknowledged and has not written yet are not: the
    DirectRunner acknowledges a pull at once and cannot drain.
    """
    stopper = threading.Thread(target=result.cancel, name="cancel-pipeline", daemon=True)
    stopper.start()
    stopper.join(timeout_secs)


def _is_dataflow(pipeline: beam.Pipeline) -> bool:
    """Whether the pipeline runs on Dataflow (a job submitted elsewhere)."""
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
    return isinstance(pipeline.runner, DataflowRunner)


def _dead_letter_json(failure: Failure) -> bytes:
    """A dead letter as the bytes of a Pub/Sub message."""
    return rows_lib.to_json(failure.to_json_row())


class _LoggedDeadLetters(DeadLetters):
    """Dead letters counted and logged by the steps that make them (no --dead_letter_topic)."""

    def __call__(self, failure: Failure) -> None:
        super().__call__(failure)
        logging.warning("dead letter: %s at %s (model %r): %s", failure.error_type,
                        failure.stage, failure.model, failure.message)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
