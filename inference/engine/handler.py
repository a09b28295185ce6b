"""`ExampleModelHandler`: one model of any framework as a Beam ModelHandler over chunks.

An element is a chunk `(origin, records)` (see `inference.data.batching`); each chunk's outcome
is a `ChunkResult`: its predicted records with their outputs as columns, and a `Failure`
for each record that failed. The handler composes like any Beam handler
(`KeyedModelHandler` on `(key, chunk)`, `RunInference`, model updates from a side input).
Per batch: the records are decoded once (`decoding`), shaped into the model's inputs, run
through the framework's `predict`, labelled when the model has `labels` (`labels`), and
split back into chunks by slicing the output arrays. A batch that fails is split until
only the records that fail on their own are left, so one bad record never costs its
neighbours their predictions.
"""
import dataclasses
import faulthandler
import gc
import itertools
import json
import logging
import os
import queue
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from inference import frameworks
from inference.data import batching, columns, decoding, labels
from inference.frameworks import trust
from inference.observe import metrics, progress
from inference.config import ConfigError, ModelConfig
from inference.data.failures import Failure
from inference.data.results import ChunkResult, PartialPredictions, describe

Element = Tuple[Any, List[bytes]]  # (origin, records)


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
        self._mapping = decoding.InputMapping(spec.inputs)
        self._labeller = labels.Labeller(spec.labels, spec.name) if spec.labels else None
        self._buckets = list(spec.length_buckets or batching.DEFAULT_LENGTH_BUCKETS)
        self._timeout = timeout_secs
        self._breadcrumbs = breadcrumbs
        self._origin = time.time()  # built with the pipeline; batches are timed from here
        self._calls: Optional[_TimedCalls] = None
        self._note: Optional[_Breadcrumbs] = None

    @property
    def model_name(self) -> str:
        return self._spec.name

    @property
    def spec(self) -> ModelConfig:
        return self._spec

    def __getstate__(self):
        return {**self.__dict__, "_calls": None, "_note": None}

    def load_model(self) -> LoadedModel:
        framework = frameworks.get(self._spec.framework)
        trust.check(self._spec, self._path, getattr(framework, "SAFE_CONTENT", ()))
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
            _enable_fault_reports(self._breadcrumbs)
        _freeze_long_lived_objects()
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
        started = time.time()
        load_seconds = model.take_load_seconds()
        if load_seconds is not None:
            metrics.record_load(self.model_name, *load_seconds)
        records = list(itertools.chain.from_iterable(chunk for _, chunk in batch))
        if self._breadcrumbs:
            self._noted().batch_started(self.model_name, batch)
        outcome = _Outcome(len(records))
        for positions, decoded in self._slices(self._groups(records)):
            self._infer(records, positions, model, outcome, decoded)
        if self._labeller is not None:
            self._label(records, outcome)
        if self._spec.postprocess_fn:
            self._postprocess(records, outcome)
        results = self._per_chunk(batch, outcome)
        if outcome.failures:
            first = next(iter(outcome.failures.values()))
            logging.warning("model %r: %d of %d records failed; first: %s at %s: %s",
                            self.model_name, len(outcome.failures), len(records),
                            first.error_type, first.stage, first.message)
        metrics.record_batch(self.model_name, len(records), started, self._origin)
        progress.inferred(self.model_name, len(records))
        if self._breadcrumbs:
            self._noted().batch_done()
        return results

    # --- one batch ----------------------------------------------------------------------

    def _groups(self, records: Sequence[bytes]):
        """[(positions, their decoded columns or None)]: the whole batch, or with length
        bucketing one group per bucket, by the value counts the batch decodes to."""
        everything = np.arange(len(records))
        if not self._spec.length_feature:
            return [(everything, None)]
        try:
            decoded = self._decoder(records)
        except Exception:  # pylint: disable=broad-except  (`_infer` isolates the bad records)
            return [(everything, None)]
        column = decoded.get(self._spec.length_feature)
        if column is None:  # no record has it: the input mapping says so, per record
            return [(everything, decoded)]
        return [(positions, decoding.take(decoded, positions))
                for positions in batching.length_buckets(column.lengths, self._buckets)]

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

    def _infer(self, records, positions: np.ndarray, model: LoadedModel, outcome,
               decoded=None):
        """Infers records[positions] into `outcome`; `decoded`: their columns, if known."""
        batch = records if len(positions) == len(records) else [records[i] for i in positions]
        takes_records = self._decoder is None
        try:
            inputs = batch if takes_records else (
                decoded if decoded is not None else self._decoder(batch))
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("decode", e, records, positions, model, outcome)
            return
        if not takes_records:
            try:
                inputs = self._prepare(inputs)
            except decoding.InputError as e:
                bad = np.zeros(len(positions), dtype=bool)
                bad[np.arange(len(positions)) if e.rows is None else e.rows] = True
                for row in np.flatnonzero(bad):
                    position = positions[row]
                    outcome.fail(position, self._failure("preprocess", e.for_row(row),
                                                         records[position]))
                if not bad.all():
                    self._infer(records, positions[~bad], model, outcome)
                return
            except Exception as e:  # pylint: disable=broad-except
                self._split_or_fail("preprocess", e, records, positions, model, outcome)
                return
        try:
            outputs = self._predict(model, inputs)
            if any(len(column) != len(batch) for column in outputs.values()):
                raise ValueError(f"model {self.model_name!r} returned "
                                 f"{ {n: len(c) for n, c in outputs.items()} } rows for a "
                                 f"batch of {len(batch)} records")
        except PartialPredictions as e:
            failed = np.zeros(len(positions), dtype=bool)
            failed[list(e.errors)] = True
            for row, error in e.errors.items():
                outcome.fail(positions[row], self._failure("inference", error, batch[row]))
            outcome.predicted(positions[~failed], e.outputs)
            return
        except TimeoutError as e:
            if len(positions) == 1:
                outcome.fail(positions[0], self._failure("timeout", e, batch[0]))
                return
            for i in range(len(positions)):  # only the records slow on their own fail
                self._infer(records, positions[i:i + 1], model, outcome)
            return
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("inference", e, records, positions, model, outcome)
            return
        outcome.predicted(positions, outputs)

    def _prepare(self, columns_: decoding.Columns):
        inputs = self._mapping(columns_)
        if self._spec.preprocess_fn:
            inputs = frameworks.import_object(self._spec.preprocess_fn,
                                              "preprocess_fn")(inputs)
        return inputs

    def _predict(self, model: LoadedModel, inputs) -> Dict[str, np.ndarray]:
        if not self._timeout:
            return model.predict(inputs)
        if self._calls is None:
            self._calls = _TimedCalls()
        try:
            return self._calls.call(model.predict, inputs, self._timeout)
        except TimeoutError:
            metrics.record_timeout(self.model_name)
            raise TimeoutError(f"inference took longer than timeout_secs="
                               f"{self._timeout}") from None

    def _split_or_fail(self, stage, error, records, positions, model, outcome):
        if len(positions) == 1:
            outcome.fail(positions[0], self._failure(stage, error, records[positions[0]]))
            return
        middle = len(positions) // 2
        for half in (positions[:middle], positions[middle:]):
            self._infer(records, half, model, outcome)

    def _failure(self, stage: str, error: Exception, record: bytes) -> Failure:
        return Failure.from_exception(stage, error, record, self.model_name)

    def _label(self, records, outcome: "_Outcome"):
        """Class names for the predicted records' scores; if that fails (the scores do not
        fit the labels), the records fail at stage "postprocess"."""
        positions, outputs = outcome.collect()
        if not len(positions):
            return
        try:
            outcome.replace(positions, self._labeller(outputs))
        except Exception as e:  # pylint: disable=broad-except
            for position in positions:
                outcome.fail(position, self._failure("postprocess", e, records[position]))

    def _postprocess(self, records, outcome: "_Outcome"):
        """The user's postprocess_fn on each predicted record's PredictionResult."""
        function = frameworks.import_object(self._spec.postprocess_fn, "postprocess_fn")
        positions, outputs = outcome.collect()
        single = list(outputs) == ["output_0"]
        kept, inferences = [], []
        for row, (position, values) in enumerate(zip(positions, columns.rows(outputs))):
            inference = values["output_0"] if single else values
            try:
                result = function(PredictionResult(records[position], inference,
                                                   self.model_name))
                inferences.append(result.inference)
                kept.append(row)
            except Exception as e:  # pylint: disable=broad-except
                outcome.fail(position, self._failure("postprocess", e, records[position]))
        outcome.replace(positions[kept], columns.from_examples(inferences,
                                                               self._spec.output_names))

    def _per_chunk(self, batch: Sequence[Element], outcome: "_Outcome") -> List[ChunkResult]:
        """The batch's outcome split back into its chunks: slices of the output arrays."""
        positions, outputs = outcome.collect()
        ends = np.cumsum([len(records) for _, records in batch])
        cuts = np.searchsorted(positions, ends)  # where each chunk's predictions end
        results, first, start = [], 0, 0
        for (origin, records), end, cut in zip(batch, ends, cuts):
            rows = positions[first:cut] - start
            kept = list(records) if len(rows) == len(records) else [records[i] for i in rows]
            failures = [dataclasses.replace(outcome.failures[p],
                                            source=describe(origin, p - start))
                        for p in range(start, end) if p in outcome.failures
                        ] if outcome.failures else []
            results.append(ChunkResult(self.model_name, origin, kept,
                                       {name: column[first:cut]
                                        for name, column in outputs.items()}, failures))
            first, start = cut, end
        return results

    def _noted(self) -> "_Breadcrumbs":
        if self._note is None:
            self._note = _Breadcrumbs(self._breadcrumbs)
        return self._note


class _Outcome:
    """A batch's predictions (groups of positions with their outputs) and failures."""

    def __init__(self, size: int):
        self.size = size
        self.groups: List[Tuple[np.ndarray, Dict[str, np.ndarray]]] = []
        self.failures: Dict[int, Failure] = {}

    def predicted(self, positions: np.ndarray, outputs: Dict[str, np.ndarray]):
        self.groups.append((positions, outputs))

    def fail(self, position: int, failure: Failure):
        self.failures[int(position)] = failure

    def collect(self) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """(predicted positions in order, their outputs) without failed positions."""
        if len(self.groups) == 1 and not self.failures:
            return self.groups[0]
        groups = [(p, o) for p, o in self.groups if len(p)]
        if not groups:
            return np.zeros(0, dtype=np.int64), {}
        positions = np.concatenate([p for p, _ in groups])
        outputs = columns.concatenate([o for _, o in groups])
        order = np.argsort(positions, kind="stable")
        keep = order[~np.isin(positions[order], list(self.failures))]
        self.groups = [(positions[keep], {n: c[keep] for n, c in outputs.items()})]
        return self.groups[0]

    def replace(self, positions: np.ndarray, outputs: Dict[str, np.ndarray]):
        self.groups = [(positions, outputs)]


class _TimedCalls:
    """Calls run in a daemon worker thread, waited for up to a timeout.

    A call that runs over is abandoned to its thread, which stays blocked until the call
    returns, then ends: a daemon thread, so it never keeps the process from exiting (Beam's
    own timeout runs calls in a ThreadPoolExecutor, whose threads the interpreter joins at
    exit: a hung model then keeps the process alive for ever).
    """

    def __init__(self):
        self._requests: Optional[queue.Queue] = None

    def call(self, function, argument, timeout: float):
        if self._requests is None:
            self._requests = queue.Queue()
            threading.Thread(target=_serve, args=(self._requests,), daemon=True,
                             name="inference-timed-calls").start()
        reply: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((function, argument, reply))
        try:
            ok, value = reply.get(timeout=timeout)
        except queue.Empty:
            self._requests.put(None)  # the thread ends once the call returns, if ever
            self._requests = None
            raise TimeoutError() from None
        if not ok:
            raise value
        return value


def _serve(requests: queue.Queue):
    while True:
        request = requests.get()
        if request is None:
            return
        function, argument, reply = request
        try:
            reply.put((True, function(argument)))
        except BaseException as e:  # pylint: disable=broad-except  (raised in the caller)
            reply.put((False, e))


class _Breadcrumbs:
    """Notes, per worker process, the batch in flight: model, size, where its records came
    from. Written to the page cache only (no fsync): a process that dies leaves it behind,
    a machine that dies takes it along."""

    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self._file = open(os.path.join(folder, f"inflight-{os.getpid()}.json"), "w")

    def batch_started(self, model: str, batch: Sequence[Element]):
        note = {"model": model, "records": sum(len(chunk) for _, chunk in batch),
                "pid": os.getpid(),
                "sources": [_source_range(origin, len(chunk)) for origin, chunk in batch]}
        self._write(json.dumps(note))

    def batch_done(self):
        self._write("")

    def _write(self, text: str):
        self._file.seek(0)
        self._file.write(text)
        self._file.truncate()
        self._file.flush()


def _source_range(origin: Any, size: int) -> str:
    first = describe(origin, 0)
    return f"{first} to {describe(origin, size - 1).rsplit(':', 1)[-1]}" if first else ""


_FAULT_FILES = []


def _enable_fault_reports(folder: str):
    """Once per process: a crash in native code (segfault, abort) writes every thread's
    Python traceback to `<folder>/faults-<pid>.log` (and Dataflow's worker log)."""
    if not _FAULT_FILES:
        os.makedirs(folder, exist_ok=True)
        _FAULT_FILES.append(open(os.path.join(folder, f"faults-{os.getpid()}.log"), "w"))
        faulthandler.enable(file=_FAULT_FILES[0], all_threads=True)


def worker_deaths(folder: str) -> List[str]:
    """What the breadcrumbs of `folder` say about worker processes that died mid-batch: one
    report per batch left in flight, with the crashing thread's Python traceback when the
    process crashed in native code."""
    if not folder or not os.path.isdir(folder):
        return []
    reports = []
    for name in sorted(os.listdir(folder)):
        if not name.startswith("inflight-"):
            continue
        with open(os.path.join(folder, name)) as f:
            text = f.read()
        if not text:
            continue
        note = json.loads(text)
        sources = "; ".join(s for s in note["sources"] if s)
        report = (f"model {note['model']!r} was inferring a batch of {note['records']} "
                  f"record(s) in worker process {note['pid']}"
                  + (f", from {sources}" if sources else ""))
        fault = _crashed_thread(os.path.join(folder, f"faults-{note['pid']}.log"))
        if fault:
            report += "\n    " + "\n    ".join(fault)
        reports.append(report)
    return reports


def _crashed_thread(path: str, limit: int = 30) -> List[str]:
    """From a faulthandler report: the error line and the crashing thread's traceback."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().strip().splitlines()
    if not lines:
        return []
    current = next((i for i, line in enumerate(lines) if line.startswith("Current thread")),
                   None)
    if current is None:
        return lines[:limit]
    end = next((i for i in range(current + 1, len(lines)) if not lines[i].strip()),
               len(lines))
    return [lines[0]] + lines[current:end][:limit]


_FROZEN = []


def _freeze_long_lived_objects():
    """Moves what the worker holds after its first model load out of the collector's sight.

    Python's full garbage collections walk every tracked object: millions, once the
    frameworks and a model are loaded, and per-chunk objects trigger them often. What
    exists at the first load (modules, the model) lives as long as the worker, so once per
    process it is frozen (`gc.freeze`); later models stay collectable.
    """
    if not _FROZEN:
        gc.freeze()
        _FROZEN.append(True)
