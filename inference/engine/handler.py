"""`ExampleModelHandler`: one model of any framework as a Beam ModelHandler over chunks.

An element is a chunk `(origin, records)` (see `inference.data.batching`); each chunk's outcome
is a `ChunkResult`: its predicted records with their outputs as columns, and a `Failure`
for each record that failed. The handler composes like any Beam handler
(`KeyedModelHandler` on `(key, chunk)`, `RunInference`, model updates from a side input).
It loads the model (through the trust gate, timed) and cuts each batch into the parts the
model runs on; `BatchRun` (`inference.engine.batch_run`) runs them, isolating failures.
"""
import itertools
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from inference import frameworks
from inference.config import ConfigError, ModelConfig
from inference.data import batching, decoding
from inference.data.results import ChunkResult
from inference.engine import worker_health
from inference.engine.batch_run import BatchRun, Element
from inference.frameworks import trust
from inference.observe import metrics


class LoadedModel:
    """A model as a worker holds it. `predict` is all the handler calls on it, so Beam can
    serve it from another process (`large_model`) through a proxy."""

    def __init__(self, framework_name: str, model: Any, spec: ModelConfig,
                 load_seconds: Tuple[float, Optional[float]]):
        self._framework = frameworks.get(framework_name)
        self._model = model
        self._spec = spec
        self._load_seconds: Optional[Tuple[float, Optional[float]]] = load_seconds

    def predict(self, inputs) -> Dict[str, np.ndarray]:
        return dict(self._framework.predict(self._model, inputs, self._spec))

    def take_load_seconds(self) -> Optional[Tuple[float, Optional[float]]]:
        """How long the model, and its tf.Transform graph (None without one), took to
        load, the first time it is asked; then None. (Beam loads models where metrics are
        not reported; the first batch reports the load.)"""
        seconds, self._load_seconds = self._load_seconds, None
        return seconds


class ExampleModelHandler(ModelHandler[Element, ChunkResult, LoadedModel]):
    """Runs one model on chunks of serialized examples: one ChunkResult per chunk.

    spec: the model's configuration, its framework and uri resolved.
    decoder: decodes a batch of records into columns (None: the framework takes the
      records as they are).
    timeout_secs: a batch that runs longer is abandoned and its records are retried one by
      one; a record still too slow fails at stage "timeout".
    breadcrumbs: a folder where each worker process notes the batch in flight, so a
      worker that dies can be reported with its model and records (see `worker_deaths`).
    """

    def __init__(self, spec: ModelConfig, decoder=None, timeout_secs: Optional[float] = None,
                 breadcrumbs: Optional[str] = None):
        super().__init__(**batching.batching_kwargs(
            spec, frameworks.batch_size(frameworks.get(spec.framework), spec)))
        self._spec = spec
        self._path = spec.uri
        self._decoder = decoder
        self._buckets = list(spec.length_buckets or batching.DEFAULT_LENGTH_BUCKETS)
        self._breadcrumbs = breadcrumbs
        self._run = BatchRun(spec, decoder, timeout_secs, breadcrumbs)

    @property
    def model_name(self) -> str:
        return self._spec.name

    @property
    def spec(self) -> ModelConfig:
        return self._spec

    def load_model(self) -> LoadedModel:
        framework = frameworks.get(self._spec.framework)
        trust.check(self._spec, self._path)
        started = time.time()
        try:
            model = framework.load(self._path, self._spec)
        except ConfigError:
            raise
        except Exception as e:
            raise RuntimeError(
                f"model {self.model_name!r} ({self._spec.framework}) could not be loaded "
                f"from {self._path}: {type(e).__name__}: {e}") from e
        model_seconds = time.time() - started
        transform_seconds = self._load_decoder()
        if self._breadcrumbs:
            worker_health.enable_fault_reports(self._breadcrumbs)
        worker_health.freeze_long_lived_objects()
        return LoadedModel(self._spec.framework, model, self._spec,
                           (model_seconds, transform_seconds))

    def _load_decoder(self) -> Optional[float]:
        """Builds the decoder with the model rather than in the first batch (and its
        timeout): a tf.Transform graph loads in seconds. Returns the seconds a graph took
        to load; None without one, or when it was loaded before (a model reloaded)."""
        if self._decoder is None:
            return None
        new_graph = (isinstance(self._decoder, decoding.TransformDecoder)
                     and not self._decoder.loaded)
        started = time.time()
        self._decoder.load()
        return time.time() - started if new_graph else None

    def update_model_path(self, model_path: Optional[str] = None):
        """A new version of the model (streaming model updates): loaded at the next load."""
        if model_path:
            self._path = model_path

    def validate_inference_args(self, inference_args: Optional[Dict[str, Any]]):
        if inference_args:
            raise ConfigError(f"model {self.model_name!r}: inference_args are not taken; "
                              f"set the model's options instead")

    def get_num_bytes(self, batch: Sequence[Element]) -> int:
        return sum(sum(map(len, records)) for _, records in batch)

    def get_metrics_namespace(self) -> str:
        return f"RunInference[{self.model_name}]"

    def run_inference(self, batch: Sequence[Element], model: LoadedModel,
                      inference_args: Optional[Dict[str, Any]] = None) -> List[ChunkResult]:
        if not any(chunk for _, chunk in batch):
            # BatchElements closes its open batch, even an empty one, before an element
            # larger than its target (a chunk of more records than min_batch_size).
            return []
        load_seconds = model.take_load_seconds()
        if load_seconds is not None:
            metrics.record_load(self.model_name, *load_seconds)
        records = list(itertools.chain.from_iterable(chunk for _, chunk in batch))
        return self._run.run(batch, records, self._slices(self._groups(records)),
                             model.predict)

    def _groups(self, records: Sequence[bytes]):
        """[(positions, their decoded columns or None)]: the whole batch, or with length
        bucketing one group per bucket, by the value counts the batch decodes to."""
        everything = np.arange(len(records))
        if not self._spec.length_feature:
            return [(everything, None)]
        try:
            decoded = self._decoder(records)
        except Exception:  # `_infer` isolates the bad records
            return [(everything, None)]
        column = decoded.get(self._spec.length_feature)
        if column is None:  # no record has it: the input mapping says so, per record
            return [(everything, decoded)]
        # Each group's positions in batch order: results are put back by position.
        return [(positions, decoding.take(decoded, positions))
                for positions in map(np.sort, batching.length_buckets(column.lengths,
                                                                      self._buckets))]

    def _slices(self, groups):
        """The groups, each cut into parts of at most max_batch_size records: chunks are
        whole elements to Beam's batching, whose stateful form (streaming) closes a batch
        after the chunk that takes it past its target, so the model's limit is kept here."""
        limit = self.batch_elements_kwargs().get("max_batch_size")
        for positions, decoded in groups:
            if not limit or len(positions) <= limit:
                yield positions, decoded
                continue
            for start in range(0, len(positions), limit):
                rows = np.arange(start, min(start + limit, len(positions)))
                yield positions[rows], None if decoded is None else decoding.take(decoded,
                                                                                   rows)
