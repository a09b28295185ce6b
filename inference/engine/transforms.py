"""The engine's Beam transforms: chunks of serialized examples in, per-model columnar
results and dead letters out; the same in batch and streaming.

    chunks (origin, records) -> InferExamples -> {model: ChunkResult}, Failures
    ChunkResult -> Encode(encoder) -> encoded records (counted as predictions), Failures
    Failures (every stage) -> CountFailures -> a dead-letter sink

Predictions are counted when they are encoded for their sink, failures when they are
dead-lettered: every input record is counted once per model it reaches.
"""
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Union

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, KeyModelMapping, RunInference

from inference.config import InferenceConfig, ModelConfig
from inference.data import batching, results
from inference.data.failures import FAILURES_TAG, Failure
from inference.data.results import ChunkResult
from inference.engine import routing as routing_lib
from inference.engine.handler import ExampleModelHandler
from inference.engine.model_versions import ModelVersions
from inference.io.dead_letters import DeadLetters
from inference.observe import metrics

# Model name -> a file pattern whose newest file serves (each worker watches it, see
# `inference.engine.model_versions`), or a PCollection of ModelMetadata: the side input
# RunInference swaps a model's versions from.
ModelUpdates = Mapping[str, Union[str, beam.PCollection]]


class InferenceOutputs(NamedTuple):
    predictions: Dict[str, beam.PCollection]  # model name -> PCollection[ChunkResult]
    failures: beam.PCollection  # PCollection[Failure], every model's, not yet counted


class InferExamples(beam.PTransform):
    """PCollection of chunks `(origin, records)` -> InferenceOutputs.

    `config.routing` says which records reach which model (see InferenceConfig). A record
    that fails (routing, decode, input mapping, inference, timeout, postprocess) becomes a
    Failure, stamped with `split`; none is dropped.

    model_updates: see ModelUpdates (streaming); model_check_secs: how often each worker
      matches a watched pattern.
    split_failures: False leaves each ChunkResult's failures in it (its records may then be
      none), for a consumer that takes them out where it encodes the results, as
      `Encode` does: one step less per bundle, for one consumer per model (streaming).
    """

    def __init__(self, handlers: Mapping[str, ExampleModelHandler],
                 config: Optional[InferenceConfig] = None, split: str = "",
                 model_updates: Optional[ModelUpdates] = None,
                 model_check_secs: float = 300, split_failures: bool = True):
        super().__init__()
        updates = dict(model_updates or {})
        self._handlers = {
            name: handler.watching(ModelVersions(updates[name], model_check_secs))
            if isinstance(updates.get(name), str) else handler
            for name, handler in handlers.items()}
        self._config = config or InferenceConfig(
            models=[ModelConfig(name=name) for name in handlers])
        self._split_name = split
        self._side_inputs = {name: update for name, update in updates.items()
                             if not isinstance(update, str)}
        self._split_failures = split_failures

    def expand(self, chunks):
        # Each model's results stay one PCollection from RunInference to the sink: no
        # Flatten on the hot path, since Beam's portable DirectRunner materializes
        # flattened PCollections (memory would grow with the input).
        routing = self._config.routing
        predictions, failures = {}, []
        if routing == "keyed":
            keyed, unrouted = self._keyed(chunks)
            failures.append(unrouted)
            for name, outcome in keyed.items():
                predictions[name] = self._split(outcome, name, failures)
        elif routing == "ab":
            parts = chunks | "SplitAB" >> beam.ParDo(routing_lib.SplitAB(
                self._config)).with_outputs(*map(str, range(len(self._handlers))))
            for i, name in enumerate(self._handlers):
                predictions[name] = self._split(self._run(parts[str(i)], name), name,
                                                failures)
        elif routing == "sequence":
            inputs = chunks
            for name in self._handlers:
                predictions[name] = self._split(self._run(inputs, name), name, failures)
                inputs = predictions[name] | f"Enrich[{name}]" >> beam.Map(
                    routing_lib.enrich)
        else:
            for name in self._handlers:
                predictions[name] = self._split(self._run(chunks, name), name, failures)
        return InferenceOutputs(predictions, flatten(failures, "FlattenFailures",
                                                     chunks.pipeline))

    def _run(self, chunks, name: str):
        return chunks | f"RunInference[{name}]" >> RunInference(
            self._handlers[name], model_metadata_pcoll=self._side_inputs.get(name))

    def _split(self, outcomes, name: str, failures: List[beam.PCollection]):
        """A model's ChunkResults -> those with predictions, failures aside."""
        if not self._split_failures:
            return outcomes
        split = outcomes | f"Results[{name}]" >> beam.ParDo(
            _SplitResults(self._split_name)).with_outputs(FAILURES_TAG, main="main")
        failures.append(split[FAILURES_TAG])
        return split.main

    def _keyed(self, chunks):
        """Beam's KeyedModelHandler: one RunInference, each key's records to its model."""
        config = self._config
        keyed = chunks | "KeyRecords" >> beam.ParDo(routing_lib.KeyRecords(
            config, self._split_name)).with_outputs(FAILURES_TAG, main="main")
        main = keyed.main
        if config.group_by_key:
            main = (main | "GroupByKey" >> beam.GroupByKey()
                    | "Rechunk" >> beam.FlatMap(routing_lib.rechunk,
                                                batching.chunk_records(config.models)))
        handler = KeyedChunks([KeyModelMapping(m.keys, self._handlers[m.name])
                               for m in config.models],
                              config.models, config.max_models_per_worker_hint)
        names = list(self._handlers)
        parts = (main
                 | "RunInference[keyed]" >> RunInference(handler)
                 | "DropKeys" >> beam.Map(lambda keyed_result: keyed_result[1])
                 | "ByModel" >> beam.Partition(lambda result, _: names.index(result.model),
                                               len(names)))
        unrouted = keyed[FAILURES_TAG] | "StampUnrouted" >> beam.Map(
            Failure.with_split, self._split_name)
        return {name: parts[i] for i, name in enumerate(names)}, unrouted


def flatten(pcolls: List[beam.PCollection], label: str, pipeline) -> beam.PCollection:
    """The one PCollection of `pcolls`, without a Flatten step (each step costs a runner
    time per bundle, and a pipeline its start-up) when there is one."""
    return pcolls[0] if len(pcolls) == 1 else pcolls | label >> beam.Flatten(
        pipeline=pipeline)


class KeyedChunks(KeyedModelHandler):
    """Beam's KeyedModelHandler on `(key, chunk)` elements, batching records.

    With several models Beam's handler gives BatchElements no arguments and says to
    override `batch_elements_kwargs`: here batches start at the smallest model's
    min_batch_size and stay within the smallest max_batch_size set.
    """

    def __init__(self, mappings, models: List[ModelConfig], max_models_per_worker_hint=None):
        super().__init__(mappings, max_models_per_worker_hint=max_models_per_worker_hint)
        kwargs = {"element_size_fn": batching.chunk_size,
                  "min_batch_size": min(batching.min_batch_size(m) for m in models)}
        if all(m.max_batch_size for m in models):
            kwargs["max_batch_size"] = min(m.max_batch_size for m in models)
        self._kwargs = kwargs

    def batch_elements_kwargs(self):
        return self._kwargs

    # An empty batch (see ExampleModelHandler.run_inference) is no work; Beam's keyed
    # handler cannot unpack one.
    def run_inference(self, batch, model, inference_args=None):
        return super().run_inference(batch, model, inference_args) if batch else []

    def get_num_bytes(self, batch) -> int:
        return super().get_num_bytes(batch) if batch else 0


class _SplitResults(beam.DoFn):
    """A ChunkResult -> the same without its failures (`main`, when it has predictions),
    and each Failure stamped with the split (`failures`)."""

    def __init__(self, split: str):
        self._split = split

    def process(self, result: ChunkResult):
        result = yield from _take_failures(result, self._split)
        if result.records:
            yield result


def _take_failures(result: ChunkResult, split: str,
                   dead_letters: Optional[DeadLetters] = None):
    """Yields a ChunkResult's failures stamped with the split (tagged `failures`, as
    `dead_letters` makes them when given); returns the result without them."""
    if not result.failures:
        return result
    for failure in result.failures:
        yield from _dead_letter(failure.with_split(split), dead_letters)
    return result._replace(failures=[], origin=results.part_of(result.origin))


def _dead_letter(failure: Failure, dead_letters: Optional[DeadLetters]):
    """The failure, tagged; or what `dead_letters` makes of it, unless that is nothing."""
    value = failure if dead_letters is None else dead_letters(failure)
    if value is not None:
        yield beam.pvalue.TaggedOutput(FAILURES_TAG, value)


class Encode(beam.PTransform):
    """ChunkResults -> each chunk's encoded records (`main`, one list per chunk, counted as
    the model's predictions) and Failures at stage "encoding" (`failures`).

    encoder(result) -> [encoded record]: an output format's encoder (e.g.
    `encoding.encode_logs`), for a chunk at once; when a chunk fails, each record is
    encoded on its own, so only its bad records fail.
    each: the encoded records one by one in `main`, not one list per chunk.
    The failures a ChunkResult still holds (see InferExamples' split_failures) go to
    `failures` too.
    dead_letters: failures counted, and encoded or delivered, in this step (see
    `DeadLetters`): `failures` then holds what it returns.
    """

    def __init__(self, encoder: Callable[[ChunkResult], List[Any]], split: str = "",
                 each: bool = False, dead_letters: Optional[DeadLetters] = None):
        super().__init__()
        self._encode = _Encode(encoder, split, each, dead_letters)

    def expand(self, chunk_results):
        return chunk_results | beam.ParDo(self._encode).with_outputs(FAILURES_TAG,
                                                                     main="main")


class _Encode(beam.DoFn):

    def __init__(self, encoder, split: str, each: bool, dead_letters):
        self._encoder = encoder
        self._split = split
        self._each = each
        self._dead_letters = dead_letters

    def setup(self):
        self._counters = {}

    def process(self, result: ChunkResult):
        result = yield from _take_failures(result, self._split, self._dead_letters)
        if not result.records:
            return
        try:
            encoded = self._encoder(result)
        except Exception:
            encoded = []
            for i, record in enumerate(result.records):
                one = result.take([i])
                try:
                    encoded += self._encoder(one)
                except Exception as e:
                    yield from _dead_letter(Failure.from_exception(
                        "encoding", e, record, result.model, self._split,
                        results.describe(result.origin, i)), self._dead_letters)
        if encoded:
            name = (metrics.PREDICTIONS, result.model, self._split)
            if name not in self._counters:
                self._counters[name] = metrics.counter(*name)
            self._counters[name].inc(len(encoded))
            if self._each:
                yield from encoded
            else:
                yield encoded

    def finish_bundle(self):
        if self._dead_letters is not None:
            self._dead_letters.finish()
