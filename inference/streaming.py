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

Model updates without a restart: with `--model_pattern`, Beam's `WatchFilePattern` polls
the pattern and RunInference swaps to the newest matching file (a side input of
`ModelMetadata`); `ExampleModelHandler.update_model_path` takes the new path, and the
trust gate checks the new file as it loads. Upload each new version under a new file name.
Windows (`--window_secs`) are what the side input is read per, so a new model serves from
the next window on. `max_batch_duration_secs` in a model's config batches across bundles.

Each message is a chunk of one record whose origin is its event time, which the rows keep
(batching re-stamps elements). `build_pipeline(messages, ...)` builds everything after the
source, so tests feed it a `TestStream`.
"""
import argparse
import json
import logging
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, \
    StandardOptions
from apache_beam.transforms import window

from inference import examples, rows as rows_lib
from inference.config import ConfigError, InferenceConfig
from inference.failures import FAILURES_TAG, Failure
from inference.handler import ExampleModelHandler
from inference.models import create_handlers
from inference.transforms import CountFailures, Encode, InferExamples, ModelUpdates

INPUT_FORMATS = ("auto", "example", "json")
DEFAULT_WINDOW_SECS = 60
DEFAULT_MODEL_CHECK_SECS = 300


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
    except Exception as e:  # pylint: disable=broad-except
        raise MessageError(f"not a serialized tf.Example: {e}") from e
    return message


class _ParseMessages(beam.DoFn):
    """A message -> a chunk (event time, [its tf.Example]), or a Failure (stage parse)."""

    def __init__(self, input_format: str):
        self._format = input_format

    def process(self, message, timestamp=beam.DoFn.TimestampParam):
        data = message.data if hasattr(message, "data") else message  # PubsubMessage
        try:
            yield timestamp.micros / 1e6, [to_example(data, self._format)]
        except MessageError as e:
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                "parse", e, data if isinstance(data, bytes) else str(data).encode()))


class StreamOutputs(NamedTuple):
    """What `build_pipeline` returns."""
    predictions: Dict[str, beam.PCollection]  # model name -> PCollection[ChunkResult]
    rows: beam.PCollection  # every model's rows (dicts, see inference.rows)
    dead_letters: beam.PCollection  # Failures, counted (see Failure.to_json_row)


def build_pipeline(messages: beam.PCollection,
                   config: InferenceConfig,
                   handlers: Optional[Mapping[str, ExampleModelHandler]] = None,
                   model_updates: Optional[ModelUpdates] = None,
                   row_spec: Optional[rows_lib.RowSpec] = None,
                   window_secs: Optional[float] = DEFAULT_WINDOW_SECS,
                   input_format: str = "auto",
                   model_check_secs: float = DEFAULT_MODEL_CHECK_SECS) -> StreamOutputs:
    """Everything after the source: parse, window, InferExamples, rows.

    messages: PCollection of message payloads (bytes) or PubsubMessages.
    handlers: model name -> handler; by default built from `config` (each model's `uri`).
    model_updates: see `inference.transforms.ModelUpdates`.
    window_secs: fixed event-time windows (None: the global window, no model updates
      on runners that read side inputs per window).
    """
    config.validate(bounded=False)
    handlers = dict(handlers) if handlers is not None else create_handlers(config)
    model_updates = dict(model_updates or {})
    problems = []
    unknown = sorted(set(model_updates) - set(handlers))
    if unknown:
        problems.append(f"model updates for unknown model(s) {unknown}; models: "
                        f"{sorted(handlers)}")
    if model_updates and config.routing == "keyed":
        problems.append("model updates with routing='keyed': Beam's KeyedModelHandler takes "
                        "per-key paths (KeyModelPathMapping), which this entry point does not "
                        "watch; run one pipeline per model or drop --model_pattern")
    if config.group_by_key and not window_secs:
        problems.append("group_by_key needs windows (--window_secs): in the global window a "
                        "GroupByKey never fires on a stream")
    if problems:
        raise ConfigError("Invalid streaming configuration:\n  - " + "\n  - ".join(problems))
    row_spec = row_spec or rows_lib.RowSpec.for_config(config)

    if window_secs:
        messages = messages | "Window" >> beam.WindowInto(window.FixedWindows(window_secs))
    parsed = messages | "Parse" >> beam.ParDo(_ParseMessages(input_format)).with_outputs(
        FAILURES_TAG, main="chunks")
    inferred = parsed.chunks | "Infer" >> InferExamples(handlers, config,
                                                         model_updates=model_updates,
                                                         model_check_secs=model_check_secs)
    rows, dead = [], [parsed[FAILURES_TAG], inferred.failures]
    for name, results in inferred.predictions.items():
        encoded = results | f"ToRows[{name}]" >> Encode(
            lambda result: row_spec.to_rows(result, timestamp=result.origin))
        rows.append(encoded.main | f"Rows[{name}]" >> beam.FlatMap(lambda chunk: chunk))
        dead.append(encoded[FAILURES_TAG])
    pipeline = messages.pipeline
    return StreamOutputs(
        inferred.predictions,
        rows | "FlattenRows" >> beam.Flatten(pipeline=pipeline),
        dead | "FlattenDeadLetters" >> beam.Flatten(pipeline=pipeline)
        | "CountDeadLetters" >> beam.ParDo(CountFailures()))


def latest_model(pattern: str) -> str:
    """The newest file matching `pattern` (what WatchFilePattern starts from)."""
    found = FileSystems.match([pattern])[0].metadata_list
    if not found:
        raise ConfigError(f"no model file matches {pattern!r}")
    return max(found, key=lambda m: (m.last_updated_in_seconds, m.path)).path


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
    with FileSystems.open(args.inference_config) as f:
        config = InferenceConfig.from_json(f.read().decode("utf-8")).validate(bounded=False)
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
             | "DeadLettersToJson" >> beam.Map(lambda f: rows_lib.to_json(f.to_json_row()))
             | "WriteDeadLetters" >> beam.io.WriteToPubSub(args.dead_letter_topic))
    else:
        _ = outputs.dead_letters | "LogDeadLetters" >> beam.Map(_log_dead_letter)
    return pipeline.run()


def _log_dead_letter(failure: Failure):
    logging.warning("dead letter: %s at %s (model %r): %s", failure.error_type, failure.stage,
                    failure.model, failure.message)


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
