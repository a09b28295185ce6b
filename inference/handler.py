"""`ExampleModelHandler`: any framework's Beam handler, fed chunks of serialized tf.Examples.

The engine moves records in chunks (lists of serialized records) rather than one by one:
Beam's per-element cost (a few microseconds per transform) is more than decoding and
running a small model costs per record, so a chunk is the element from the reader to the
sink. The handler is a Beam `ModelHandler[chunk, list of PredictionResult, model]` and
composes like one (`KeyedModelHandler` on `(key, chunk)`, `with_preprocess_fn`,
`RunInference(...).with_exception_handling()`); Beam's `BatchElements` counts a chunk as
its number of records (`element_size_fn`), so batch sizes are in records as usual.
It owns the Beam-level controls (batch sizes, `large_model`, `model_copies`) and delegates
loading and the forward pass to the framework's own Beam handler. Each batch is decoded
once, so no per-record parsing happens in Python.
"""
import copy
import dataclasses
import gc
import logging
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from inference import decoding, frameworks, metrics
from inference.config import ConfigError, ModelConfig
from inference.failures import Failure
from inference.frameworks import FrameworkHandler

Chunk = Sequence[bytes]
# A model's smallest batch when its configuration sets none; it is also the most records
# a chunk holds (a chunk must fit in the smallest batch, see `chunk_size`).
DEFAULT_MIN_BATCH_SIZE = 32
# Beam's default length buckets (BatchElements._DEFAULT_BUCKET_BOUNDARIES).
DEFAULT_LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)


def chunk_size(element) -> int:
    """The records in a chunk, or in a keyed `(key, chunk)`: BatchElements' element_size_fn."""
    return len(element[1]) if isinstance(element, tuple) else len(element)


def min_batch_size(model: ModelConfig) -> int:
    """The model's smallest batch: its own, else DEFAULT_MIN_BATCH_SIZE within its max."""
    if model.min_batch_size:
        return model.min_batch_size
    return min(DEFAULT_MIN_BATCH_SIZE, model.max_batch_size or DEFAULT_MIN_BATCH_SIZE)


class ExampleModelHandler(ModelHandler[Chunk, List[PredictionResult], Any]):
    """Runs one model on chunks of serialized tf.Examples: one result list per chunk.

    Each record's result is `PredictionResult(example=<serialized record>,
    inference=<the framework's output for that record, or a Failure>,
    model_id=<model name>)`.
    """

    def __init__(self, model: ModelConfig, framework: FrameworkHandler,
                 decoder: Optional[decoding.ExampleDecoder] = None):
        # Chunks are at most min_batch_size records (see `chunk_size`), so Beam's
        # BatchElements, counting records, never meets a chunk bigger than its batch.
        super().__init__(**{**model.batching_kwargs(), "min_batch_size": min_batch_size(model),
                            "element_size_fn": chunk_size})
        self._model = model
        self._inner = framework.handler
        self._to_examples = framework.to_examples
        self._forward = framework.forward
        self._decodes = framework.decodes
        self._decoder = decoder
        self._mapping = decoding.InputMapping(model.inputs)
        self._preprocess = (frameworks.import_object(model.preprocess_fn)
                            if model.preprocess_fn else None)
        self._postprocess = (frameworks.import_object(model.postprocess_fn)
                             if model.postprocess_fn else None)
        self._buckets = list(model.length_buckets or DEFAULT_LENGTH_BUCKETS)
        self._origin = time.time()  # built with the pipeline; batches are timed from here

    @property
    def model_name(self) -> str:
        return self._model.name

    @property
    def output_names(self):
        return tuple(self._model.output_names)

    @property
    def decodes(self) -> bool:
        """False when the framework takes serialized records as they are."""
        return self._decodes

    def load_model(self) -> Any:
        try:
            model = self._inner.load_model()
        except Exception as e:
            raise RuntimeError(
                f"model {self.model_name!r} ({self._model.framework}) could not be loaded "
                f"from {self._model.uri}: {type(e).__name__}: {e}") from e
        if self._decoder is not None:  # a tf.Transform graph loads in seconds: load it now
            self._decoder.load()
        _freeze_long_lived_objects()
        return model

    def _prepare(self, columns: decoding.Columns) -> Any:
        inputs = self._mapping(columns)
        if self._preprocess is not None:
            inputs = self._preprocess(inputs)
        return inputs if self._forward is not None else self._to_examples(inputs)

    def _run(self, inputs: Any, model: Any, inference_args) -> List[Any]:
        """The model's output for each record of the batch."""
        if self._forward is not None:
            return frameworks.numpy_rows(self._forward(model, inputs, inference_args))
        return [_inference(result)
                for result in self._inner.run_inference(inputs, model, inference_args)]

    def run_inference(self, batch: Sequence[Chunk], model: Any,
                      inference_args: Optional[Dict[str, Any]] = None
                      ) -> List[List[PredictionResult]]:
        """Per chunk, one result per record: a prediction, or a `Failure` for a record that
        failed.

        A batch that fails is split until only the records that fail on their own are
        left, so one bad record never costs its neighbours their predictions.
        """
        started = time.time()
        records = [record for chunk in batch for record in chunk]
        results: List[Optional[PredictionResult]] = [None] * len(records)
        for positions, columns in self._groups(records):
            self._infer(records, positions, model, inference_args, results, columns)
        failed = [r.inference for r in results if isinstance(r.inference, Failure)]
        if failed:
            logging.warning("model %r: %d of %d records failed; first: %s at %s: %s",
                            self.model_name, len(failed), len(records),
                            failed[0].error_type, failed[0].stage, failed[0].message)
        metrics.record_batch(self.model_name, len(records), started, self._origin)
        per_chunk, start = [], 0
        for chunk in batch:
            per_chunk.append(results[start:start + len(chunk)])
            start += len(chunk)
        return per_chunk

    def _groups(self, records: Sequence[bytes]):
        """[(positions, their decoded columns or None)]: the whole batch, or with length
        bucketing one group per bucket, by the value counts the batch decodes to."""
        everything = list(range(len(records)))
        if not self._model.length_feature:
            return [(everything, None)]
        try:
            columns = self._decoder(records)
        except Exception:  # pylint: disable=broad-except  (`_infer` isolates the bad records)
            return [(everything, None)]
        column = columns.get(self._model.length_feature)
        if column is None:  # no record has it: the input mapping says so, per record
            return [(everything, columns)]
        # side="right": boundaries are lower-inclusive, as Beam's bisect_right
        buckets = np.searchsorted(self._buckets, column.lengths, side="right")
        groups = []
        for bucket in np.unique(buckets):
            rows = np.flatnonzero(buckets == bucket)
            groups.append((rows.tolist(), decoding.take(columns, rows)))
        return groups

    def _infer(self, records, positions, model, inference_args, out, columns=None):
        """Infers records[positions] into out[positions]; `columns`: already decoded."""
        batch = [records[i] for i in positions]
        try:
            if columns is not None:
                inputs = columns
            else:
                inputs = self._decoder(batch) if self.decodes else batch
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("decode", e, records, positions, model, inference_args, out)
            return
        try:
            if self.decodes:
                inputs = self._prepare(inputs)
        except decoding.InputError as e:
            bad = set(range(len(positions)) if e.rows is None else e.rows.tolist())
            for i in bad:
                out[positions[i]] = self._failure("preprocess", e, records[positions[i]])
            rest = [p for i, p in enumerate(positions) if i not in bad]
            if rest:
                self._infer(records, rest, model, inference_args, out)
            return
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("preprocess", e, records, positions, model, inference_args,
                                out)
            return
        try:
            inferred = self._run(inputs, model, inference_args)
            if len(inferred) != len(batch):
                raise RuntimeError(f"model {self.model_name!r} returned {len(inferred)} "
                                   f"results for a batch of {len(batch)} records")
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("inference", e, records, positions, model, inference_args,
                                out)
            return
        name, make = self.model_name, PredictionResult._make  # _make skips a Python __new__
        for position, result in zip(positions, inferred):
            out[position] = make((records[position], result, name))
        if self._postprocess is not None:
            for position in positions:
                out[position] = self._finish(out[position])

    def _finish(self, result: PredictionResult) -> PredictionResult:
        try:
            return self._postprocess(result)
        except Exception as e:  # pylint: disable=broad-except
            return self._failure("postprocess", e, result.example)

    def _split_or_fail(self, stage, error, records, positions, model, inference_args, out):
        if len(positions) == 1:
            out[positions[0]] = self._failure(stage, error, records[positions[0]])
            return
        middle = len(positions) // 2
        for half in (positions[:middle], positions[middle:]):
            self._infer(records, half, model, inference_args, out)

    def _failure(self, stage: str, error: Exception, record: bytes) -> PredictionResult:
        return PredictionResult(
            record, Failure.from_exception(stage, error, record, self.model_name),
            self.model_name)

    def with_batch_size(self, size: int) -> "ExampleModelHandler":
        """A copy of this handler that runs batches of exactly `size` records."""
        clone = copy.copy(self)
        clone._batching_kwargs = {**self._batching_kwargs, "min_batch_size": size,
                                  "max_batch_size": size}
        return clone

    def get_num_bytes(self, batch: Sequence[Chunk]) -> int:
        return sum(len(record) for chunk in batch for record in chunk)

    def get_metrics_namespace(self) -> str:
        return f"RunInference[{self.model_name}]"

    def validate_inference_args(self, inference_args):
        self._inner.validate_inference_args(inference_args)

    def update_model_path(self, model_path: Optional[str] = None):
        self._inner.update_model_path(model_path)

    def should_garbage_collect_on_timeout(self) -> bool:
        return self._inner.should_garbage_collect_on_timeout()

    def set_environment_vars(self):
        self._inner.set_environment_vars()


_FROZEN = []


def _freeze_long_lived_objects():
    """Moves what the worker holds after its first model load out of the collector's sight.

    Python's full garbage collections walk every tracked object: millions, once
    TensorFlow, PyTorch and a model are loaded. Per-record results trigger them often,
    and they cost more than a small model's forward pass (3 us per result at 100k
    records, 30% of the run). What exists at the first load (modules, the model) lives as
    long as the worker, so once per process it is frozen (`gc.freeze`); later models stay
    collectable.
    """
    if not _FROZEN:
        gc.freeze()
        _FROZEN.append(True)


def _inference(result: Any) -> Any:
    # Beam's handlers return PredictionResults; tfx_bsl's return PredictionLogs as they are.
    return result.inference if isinstance(result, PredictionResult) else result


def create_handler(model: ModelConfig, uri: Optional[str] = None, schema=None,
                   transform_output_dir: Optional[str] = None) -> ExampleModelHandler:
    """The handler for `model`, with its framework detected from `uri` when not set.

    schema: the examples' tensorflow_metadata Schema, when known; decoding then follows it
      (and skips features no model reads). Without one, types come from the data.
    transform_output_dir: a tf.Transform output; the records are then raw examples, and
      the model reads their transformed features.
    """
    # Detection reads the model's files with TensorFlow's gfile at pipeline construction;
    # imported here so that workers, which only unpickle handlers, do not load TensorFlow.
    from inference import detection  # pylint: disable=import-outside-toplevel
    framework, path = detection.resolve(uri or model.uri, model.framework)
    model = dataclasses.replace(model, framework=framework, uri=path)
    built = frameworks.build(model, path)
    if not built.decodes and model.length_feature:
        raise ConfigError(f"model {model.name!r} ({framework}) takes serialized records as "
                          f"they are, so length bucketing (length_feature) does not apply")
    if built.decodes and not model.inputs.features:
        raise ConfigError(f"model {model.name!r} ({framework}) needs inputs.features: the "
                          f"features it takes, in order")
    decoder = None
    if built.decodes:
        decoder = (decoding.TransformDecoder(transform_output_dir, model.inputs.features)
                   if transform_output_dir else
                   decoding.ExampleDecoder(schema, model.inputs.features))
    return ExampleModelHandler(model, built, decoder)
