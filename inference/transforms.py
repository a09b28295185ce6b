"""Beam transforms of the engine: serialized examples in, per-model predictions and dead
letters out, everything counted."""
import functools
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, KeyModelMapping, \
    PredictionResult, RunInference

from inference import routing as routing_lib
from inference.config import ConfigError, InferenceConfig, ModelConfig
from inference.encoding import encode_prediction_log
from inference.failures import FAILURES_TAG, Failure, timeout_or_inference
from inference.handler import ExampleModelHandler, create_handler

COUNTERS_NAMESPACE = "tfx_runinference"


def examples_counter(split: str) -> str:
    return f"examples_in|{split}"


def failures_counter(model_name: str, split: str, stage: str) -> str:
    return f"failures|{model_name}|{split}|{stage}"


def create_handlers(config: InferenceConfig, model_uris: Optional[Mapping[str, str]] = None,
                    schema=None, transform_output_dir: Optional[str] = None
                    ) -> Dict[str, ExampleModelHandler]:
    """One ExampleModelHandler per configured model, frameworks detected, by model name.

    model_uris: model name -> path, for models whose configuration leaves `uri` empty.
    schema, transform_output_dir: how records are decoded (see `create_handler`).
    """
    config.validate()
    model_uris = model_uris or {}
    handlers = {}
    for model in config.models:
        uri = model_uris.get(model.name) or model.uri
        if not uri:
            raise ConfigError(f"model {model.name!r} has no uri: set it in the configuration "
                              f"or give the model another way (a Model input, a pattern)")
        handlers[model.name] = create_handler(model, uri, schema, transform_output_dir)
    return handlers


class _SplitFailures(beam.DoFn):
    """Routes outcomes holding a Failure to the failures output; counts both, per model."""

    def __init__(self, split: str):
        self._split = split

    def setup(self):
        self._counters = {}

    def _count(self, *name_parts: str):
        if name_parts not in self._counters:
            self._counters[name_parts] = beam.metrics.Metrics.counter(
                COUNTERS_NAMESPACE, "|".join(name_parts))
        self._counters[name_parts].inc()

    def process(self, outcome):
        failure = outcome if isinstance(outcome, Failure) else outcome.inference
        if not isinstance(failure, Failure):
            self._count("predictions", outcome.model_id or "", self._split)
            yield outcome
            return
        failure = failure.with_split(self._split)
        self._count("failures", failure.model, self._split, failure.stage)
        yield beam.pvalue.TaggedOutput(FAILURES_TAG, failure)


def _failed_batch_records(dead_letter, model_name: str, model_by_key=None):
    """Beam's (batch, (exception type, repr, traceback)) -> one Failure per record."""
    batch, (error_type, error_repr, _) = dead_letter
    stage = timeout_or_inference(error_type)
    message = error_repr if stage == "inference" else (
        "inference on the batch holding this record exceeded the timeout")
    for record in batch:
        model = model_name
        if model_by_key is not None:  # keyed: (key, record)
            key, record = record
            model = model_by_key.get(key, model_name)
        yield Failure(stage, getattr(error_type, "__name__", str(error_type)), message,
                      record, model)


class InferenceOutputs(NamedTuple):
    predictions: Dict[str, beam.PCollection]  # model name -> PCollection[PredictionResult]
    failures: beam.PCollection  # PCollection[Failure], every model's


class InferExamples(beam.PTransform):
    """PCollection[bytes] -> InferenceOutputs: per model predictions, and dead letters.

    `config.routing` says which records reach which model (see InferenceConfig). A record
    that fails (routing, decode, input mapping, inference) becomes a Failure; none is
    dropped. With `config.timeout_secs`, a batch that runs longer is abandoned (Beam
    discards and reloads the model) and its records are retried one by one, so only the
    records that are slow on their own fail, at stage "timeout".
    """

    def __init__(self, handlers: Mapping[str, ExampleModelHandler],
                 config: Optional[InferenceConfig] = None, split: str = "",
                 inference_args: Optional[dict] = None):
        super().__init__()
        self._handlers = handlers
        self._config = config or InferenceConfig(
            models=[ModelConfig(name=name) for name in handlers])
        self._split_name = split
        self._inference_args = inference_args

    def expand(self, records):
        # Each model's results stay one PCollection from RunInference to the sink: no
        # Flatten on the hot path, since Beam's portable DirectRunner materializes
        # flattened PCollections (memory would grow with the input).
        routing = self._config.routing
        outcomes, predictions, failures = {}, {}, []
        if routing == "keyed":
            outcomes, unrouted = self._keyed(records)
            failures.append(unrouted)
        elif routing == "ab":
            parts = records | "SplitAB" >> beam.Partition(
                routing_lib.ab_partition, len(self._handlers),
                routing_lib.cumulative(self._config), self._config.routing_feature)
            outcomes = {name: self._infer(parts[i], handler, name)
                        for i, (name, handler) in enumerate(self._handlers.items())}
        elif routing == "sequence":
            for name, handler in self._handlers.items():
                predictions[name], failed = self._split(
                    *self._infer(records, handler, name), name)
                failures += failed
                records = predictions[name] | f"Enrich[{name}]" >> beam.Map(
                    routing_lib.enrich, handler.output_names)
        else:
            outcomes = {name: self._infer(records, handler, name)
                        for name, handler in self._handlers.items()}
        for name, (results, failed) in outcomes.items():
            predictions[name], failed = self._split(results, failed, name)
            failures += failed
        return InferenceOutputs(predictions, failures | "FlattenFailures" >> beam.Flatten(
            pipeline=records.pipeline))

    def _split(self, results, failed, name):
        """(predictions, [failures]) of one model; counts both."""
        split = results | f"SplitFailures[{name}]" >> beam.ParDo(
            _SplitFailures(self._split_name)).with_outputs(FAILURES_TAG, main="main")
        counted = [self._count_failures(pcoll, f"CountFailures[{name}][{i}]")
                   for i, pcoll in enumerate(failed)]
        return split.main, [split[FAILURES_TAG]] + counted

    def _count_failures(self, failures, label):
        return (failures | label >> beam.ParDo(_SplitFailures(self._split_name))
                .with_outputs(FAILURES_TAG, main="none"))[FAILURES_TAG]

    def _infer(self, records, handler, name):
        """One model's (results, [failures]): results may hold per-record Failures."""
        results, failed = self._run(records, handler, name, f"RunInference[{name}]")
        if not self._config.timeout_secs:
            return results, [failed]
        retried, failed = self._retry_one_by_one(failed, handler, name)
        return (results, retried) | f"Merge[{name}]" >> beam.Flatten(), failed

    def _run(self, records, handler, name, label, model_by_key=None):
        results, dead = (records | label >> RunInference(
            handler, inference_args=self._inference_args).with_exception_handling(
                timeout=self._config.timeout_secs))
        failed = dead.failed_inferences | f"{label}.Failed" >> beam.FlatMap(
            _failed_batch_records, name, model_by_key)
        return results, failed

    def _retry_one_by_one(self, failed, handler, name):
        """Records of timed-out batches, inferred again in batches of one."""
        is_timeout = failed | f"TimedOut[{name}]" >> beam.Partition(
            lambda f, _: int(f.stage == "timeout"), 2)
        retried, still_failed = self._run(
            is_timeout[1] | f"Records[{name}]" >> beam.Map(lambda f: f.record),
            handler.with_batch_size(1), name, f"RetryOneByOne[{name}]")
        return retried, [is_timeout[0], still_failed]

    def _keyed(self, records):
        """Beam's KeyedModelHandler: one RunInference, each key's records to its model."""
        config = self._config
        keyed = records | "KeyRecords" >> beam.ParDo(
            routing_lib.KeyRecords(config)).with_outputs(FAILURES_TAG, main="main")
        main = keyed.main
        if config.group_by_key:
            main = (main | "GroupByKey" >> beam.GroupByKey()
                    | "Ungroup" >> beam.FlatMap(lambda kv: [(kv[0], r) for r in kv[1]]))
        handler = KeyedModelHandler(
            [KeyModelMapping(m.keys, self._handlers[m.name]) for m in config.models],
            max_models_per_worker_hint=config.max_models_per_worker_hint)
        model_by_key = {key: m.name for m in config.models for key in m.keys}
        results, failed = self._run(main, handler, "keyed", "RunInference[keyed]",
                                    model_by_key)
        names = list(self._handlers)
        parts = (results
                 | "DropKeys" >> beam.Map(lambda kv: kv[1])
                 | "ByModel" >> beam.Partition(
                     lambda result, _: names.index(result.model_id), len(names)))
        outcomes = {name: (parts[i], []) for i, name in enumerate(names)}
        unrouted = (keyed[FAILURES_TAG], failed) | "Unrouted" >> beam.Flatten()
        return outcomes, self._count_failures(unrouted, "CountUnrouted")


class Encode(beam.PTransform):
    """PCollection[PredictionResult] -> bytes (`main`) and Failures (`failures`, stage
    encoding), with `encoder(result) -> bytes` one of the output formats' encoders."""

    def __init__(self, encoder: Callable[[PredictionResult], bytes], split: str = ""):
        super().__init__()
        self._encoder = encoder
        self._split = split

    def expand(self, results):
        encoder, split = self._encoder, self._split

        def encode(result: PredictionResult):
            try:
                yield encoder(result)
            except Exception as e:  # pylint: disable=broad-except
                yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                    "encoding", e, result.example, result.model_id or "", split))

        return results | beam.FlatMap(encode).with_outputs(FAILURES_TAG, main="main")


def prediction_log_encoder(output_names: Sequence[str] = ()) -> Callable[[PredictionResult],
                                                                         bytes]:
    """The encoder of serialized PredictionLogs, as TFX's BulkInferrer writes them."""
    return functools.partial(encode_prediction_log, output_names=tuple(output_names))
