"""Beam transforms of the engine: chunks of serialized examples in, per-model predictions
and dead letters out, everything counted."""
import functools
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, KeyModelMapping, \
    PredictionResult, RunInference

from inference import routing as routing_lib
from inference.config import ConfigError, InferenceConfig, ModelConfig
from inference.encoding import encode_results
from inference.failures import FAILURES_TAG, Failure, timeout_or_inference
from inference.handler import ExampleModelHandler, chunk_size, create_handler, \
    min_batch_size
from inference.metrics import COUNTERS_NAMESPACE, failures_counter, predictions_counter


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
    """A chunk's results -> its predictions (one list, `main`) and its Failures; or a
    Failure -> the failures output. Counts both, per model."""

    def __init__(self, split: str):
        self._split = split

    def setup(self):
        self._counters = {}

    def _count(self, name: str, count: int = 1):
        if name not in self._counters:
            self._counters[name] = beam.metrics.Metrics.counter(COUNTERS_NAMESPACE, name)
        self._counters[name].inc(count)

    def _failure(self, failure: Failure):
        failure = failure.with_split(self._split)
        self._count(failures_counter(failure.model, self._split, failure.stage))
        return beam.pvalue.TaggedOutput(FAILURES_TAG, failure)

    def process(self, outcome):
        if isinstance(outcome, Failure):
            yield self._failure(outcome)
            return
        predictions = []
        for result in outcome:
            if isinstance(result.inference, Failure):
                yield self._failure(result.inference)
            else:
                predictions.append(result)
        if predictions:
            self._count(predictions_counter(predictions[0].model_id or "", self._split),
                        len(predictions))
            yield predictions


def _failed_batch_records(dead_letter, model_name: str, model_by_key=None):
    """Beam's (batch of chunks, (exception type, repr, traceback)) -> one Failure per
    record."""
    batch, (error_type, error_repr, _) = dead_letter
    stage = timeout_or_inference(error_type)
    message = error_repr if stage == "inference" else (
        "inference on the batch holding this record exceeded the timeout")
    for chunk in batch:
        model = model_name
        if model_by_key is not None:  # keyed: (key, chunk)
            key, chunk = chunk
            model = model_by_key.get(key, model_name)
        for record in chunk:
            yield Failure(stage, getattr(error_type, "__name__", str(error_type)), message,
                          record, model)


class InferenceOutputs(NamedTuple):
    # model name -> PCollection[List[PredictionResult]]: a chunk's predictions
    predictions: Dict[str, beam.PCollection]
    failures: beam.PCollection  # PCollection[Failure], every model's


class InferExamples(beam.PTransform):
    """PCollection of chunks (lists of serialized tf.Examples, see `inference.handler`)
    -> InferenceOutputs: per model, the chunks' predictions; and dead letters.

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
            parts = records | "SplitAB" >> beam.ParDo(routing_lib.SplitAB(
                self._config)).with_outputs(*map(str, range(len(self._handlers))))
            outcomes = {name: self._infer(parts[str(i)], handler, name)
                        for i, (name, handler) in enumerate(self._handlers.items())}
        elif routing == "sequence":
            for name, handler in self._handlers.items():
                predictions[name], failed = self._split(
                    *self._infer(records, handler, name), name)
                failures += failed
                records = predictions[name] | f"Enrich[{name}]" >> beam.Map(
                    routing_lib.enrich_chunk, handler.output_names)
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
            is_timeout[1] | f"Records[{name}]" >> beam.Map(lambda f: [f.record]),
            handler.with_batch_size(1), name, f"RetryOneByOne[{name}]")
        return retried, [is_timeout[0], still_failed]

    def _keyed(self, records):
        """Beam's KeyedModelHandler: one RunInference, each key's records to its model."""
        config = self._config
        keyed = records | "KeyRecords" >> beam.ParDo(
            routing_lib.KeyRecords(config)).with_outputs(FAILURES_TAG, main="main")
        main = keyed.main
        sizes = [min_batch_size(m) for m in config.models]
        if config.group_by_key:
            main = (main | "GroupByKey" >> beam.GroupByKey()
                    | "Rechunk" >> beam.FlatMap(routing_lib.rechunk, min(sizes)))
        handler = _KeyedChunks(
            [KeyModelMapping(m.keys, self._handlers[m.name]) for m in config.models],
            max_models_per_worker_hint=config.max_models_per_worker_hint)
        model_by_key = {key: m.name for m in config.models for key in m.keys}
        results, failed = self._run(main, handler, "keyed", "RunInference[keyed]",
                                    model_by_key)
        names = list(self._handlers)
        parts = (results
                 | "DropKeys" >> beam.Map(lambda kv: kv[1])
                 | "ByModel" >> beam.Partition(  # a key's chunk: one model's results
                     lambda results, _: names.index(results[0].model_id), len(names)))
        outcomes = {name: (parts[i], []) for i, name in enumerate(names)}
        unrouted = (keyed[FAILURES_TAG], failed) | "Unrouted" >> beam.Flatten()
        return outcomes, self._count_failures(unrouted, "CountUnrouted")


class _KeyedChunks(KeyedModelHandler):
    """Beam's KeyedModelHandler on `(key, chunk)` elements: batches count records.

    With several models, Beam's handler gives BatchElements no arguments (each model has
    its own sizes); here batches start at the smallest model's min_batch_size, so no chunk
    outgrows a batch, and stay within the smallest max_batch_size set.
    """

    def batch_elements_kwargs(self):
        handlers = list(self._id_to_mh_map.values())
        kwargs = {"element_size_fn": chunk_size,
                  "min_batch_size": min(h.batch_elements_kwargs()["min_batch_size"]
                                        for h in handlers)}
        maxima = [h.batch_elements_kwargs().get("max_batch_size") for h in handlers]
        if all(maxima):
            kwargs["max_batch_size"] = min(maxima)
        return kwargs


class Encode(beam.PTransform):
    """PCollection of chunks' results -> chunks of bytes (`main`) and Failures
    (`failures`, stage encoding).

    encoder(results) -> [bytes]: one of the output formats' encoders, for a chunk at once;
    when a chunk fails, each record is encoded on its own, so only its bad records fail.
    """

    def __init__(self, encoder: Callable[[Sequence[PredictionResult]], List[bytes]],
                 split: str = ""):
        super().__init__()
        self._encoder = encoder
        self._split = split

    def expand(self, results):
        encoder, split = self._encoder, self._split

        def encode(chunk):  # a chunk's PredictionResults
            try:
                yield encoder(chunk)
                return
            except Exception:  # pylint: disable=broad-except
                pass
            encoded = []
            for result in chunk:
                try:
                    encoded += encoder([result])
                except Exception as e:  # pylint: disable=broad-except
                    yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                        "encoding", e, result.example, result.model_id or "", split))
            if encoded:
                yield encoded

        return results | beam.FlatMap(encode).with_outputs(FAILURES_TAG, main="main")


def prediction_log_encoder(output_names: Sequence[str] = ()
                           ) -> Callable[[Sequence[PredictionResult]], List[bytes]]:
    """The encoder of serialized PredictionLogs, as TFX's BulkInferrer writes them."""
    return functools.partial(encode_results, output_names=tuple(output_names))
