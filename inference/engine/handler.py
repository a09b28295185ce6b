"""`ExampleModelHandler`: one model of any framework as a Beam ModelHandler over chunks.

An element is a chunk `(origin, records)` (see `inference.data.batching`); each chunk's outcome
is a `ChunkResult`: its predicted records with their outputs as columns, and a `Failure`
for each record that failed. The handler composes like any Beam handler
(`KeyedModelHandler` on `(key, chunk)`, `RunInference`, model updates from a side input).
It loads the model (through the trust gate, timed) and cuts each batch into the parts the
model runs on; `BatchRun` (`inference.engine.batch_run`) runs them, isolating failures.
"""
import copy
import functools
import itertools
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from inference import frameworks
from inference.config import ConfigError, ModelConfig
from inference.data import batching, decoding
from inference.data.results import ChunkResult
from inference.engine import worker_health
from inference.engine.batch_run import BatchRun, Element
from inference.engine.model_versions import ModelVersions, VersionWatch
from inference.frameworks import trust
from inference.observe import metrics

# The last model each held handler loaded, by model name (see `ExampleModelHandler.held`).
_held: Dict[str, "LoadedModel"] = {}


def load_file(spec: ModelConfig, path: str) -> Tuple[Any, float]:
    """The model at `path` through the trust gate, and the seconds its load took."""
    framework = frameworks.get(spec.framework)
    trust.check(spec, path)
    started = time.time()
    try:
        model = framework.load(path, spec)
    except ConfigError:
        raise
    except Exception as e:
        raise RuntimeError(
            f"model {spec.name!r} ({spec.framework}) could not be loaded from {path}: "
            f"{type(e).__name__}: {e}") from e
    return model, time.time() - started


class LoadedModel:
    """A model as a worker holds it. `refresh` and `predict` are all the handler calls on
    it, so Beam can serve it from another process (`large_model`) through a proxy.

    watch: the model's versions, when they are watched; `refresh` then swaps in a newer
      one, loaded by `load(path)`."""

    def __init__(self, framework_name: str, model: Any, spec: ModelConfig,
                 load_seconds: Tuple[float, Optional[float]],
                 watch: Optional[VersionWatch] = None,
                 load: Optional[Callable[[str], Tuple[Any, float]]] = None):
        self._framework = frameworks.get(framework_name)
        self._model = model
        self._spec = spec
        self._load_seconds: Optional[Tuple[float, Optional[float]]] = load_seconds
        self._watch = watch
        self._load = load

    def refresh(self) -> None:
        """Serves the newest version from the next batch on, once one appeared."""
        if self._watch is None or not self._watch.due():
            return
        loaded = self._watch.next(self._load, self._spec.name)
        if loaded is not None:
            self._model, seconds = loaded
            self._load_seconds = (seconds, None)

    def predict(self, inputs) -> Dict[str, np.ndarray]:
        return dict(self._framework.predict(self._model, inputs, self._spec))

    def take_load_seconds(self) -> Optional[Tuple[float, Optional[float]]]:
        """How long the model, and its tf.Transform graph (None without one), took to
        load, the first time it is asked after a load; then None. (Beam loads models where
        metrics are not reported; the first batch reports the load.)"""
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
        self._versions: Optional[ModelVersions] = None
        self._held = False

    @property
    def model_name(self) -> str:
        return self._spec.name

    @property
    def spec(self) -> ModelConfig:
        return self._spec

    def watching(self, versions: ModelVersions) -> "ExampleModelHandler":
        """This handler serving the newest of `versions`: at load, then a newer one as soon
        as a worker's check finds it (see `inference.engine.model_versions`)."""
        watched = copy.copy(self)
        watched._versions = versions
        return watched

    def held(self) -> "ExampleModelHandler":
        """This handler keeping the last model it loaded in each worker process until it
        loads another (or a held handler of a model of the same name does), for a process
        that runs one pipeline (streaming).

        Beam keeps a loaded model alive only while a DoFn holds it or while it is the last
        shared object the process acquired. The local streaming runner sets its DoFns up
        again for every bundle, and RunInference acquires another shared object (its model
        status) before the model, so every bundle would load the model again."""
        held = copy.copy(self)
        held._held = True
        return held

    def load_model(self) -> LoadedModel:
        load = functools.partial(load_file, self._spec)
        if self._versions:
            (model, model_seconds), version = self._versions.load_newest(load,
                                                                         self.model_name)
        else:
            model, model_seconds = load(self._path)
        transform_seconds = self._load_decoder()
        if self._breadcrumbs:
            worker_health.enable_fault_reports(self._breadcrumbs)
        if not self._versions:  # a version swapped out must stay collectable
            worker_health.freeze_long_lived_objects()
        watch = self._versions.watch(version) if self._versions else None
        loaded = LoadedModel(self._spec.framework, model, self._spec,
                             (model_seconds, transform_seconds), watch, load)
        if self._held:
            _held[self.model_name] = loaded
        return loaded

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
        """A new version of the model from RunInference's side input of ModelMetadata:
        loaded at the next load."""
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
        if self._versions:
            model.refresh()
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
