"""`BatchRun`: one model's run on a batch of chunks, isolating each record's failure.

Per batch: the records are decoded once (`decoding`), shaped into the model's inputs, run
through the framework's `predict`, labelled when the model has `labels` (`labels`),
postprocessed, and split back into chunks by slicing the output arrays. A part that fails
is split until only the records that fail on their own are left, so one bad record never
costs its neighbours their predictions; a part that runs over the timeout is retried
record by record.
"""
import dataclasses
import logging
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from apache_beam.ml.inference.base import PredictionResult

from inference import frameworks
from inference.config import ModelConfig
from inference.data import columns, decoding, labels
from inference.data.columns import PREDICTION_LOG
from inference.data.failures import Failure
from inference.data.results import ChunkResult, Origin, PartialPredictions, describe
from inference.engine.worker_health import Breadcrumbs, TimedCalls
from inference.observe import metrics, progress

Element = Tuple[Origin, List[bytes]]  # a chunk: (origin, records)
Predict = Callable[[object], Dict[str, np.ndarray]]
# Parts of a batch: (positions in the batch, their decoded columns or None).
Parts = Iterable[Tuple[np.ndarray, Optional[decoding.Columns]]]


class BatchRun:
    """Runs one model on batches of chunks: a ChunkResult per chunk.

    decoder: decodes records into columns (None: the framework takes the records as they
      are). timeout_secs, breadcrumbs: see `ExampleModelHandler`.
    """

    def __init__(self, spec: ModelConfig, decoder=None, timeout_secs: Optional[float] = None,
                 breadcrumbs: Optional[str] = None):
        self._spec = spec
        self._decoder = decoder
        self._mapping = decoding.InputMapping(spec.inputs)
        self._labeller = labels.Labeller(spec.labels, spec.name) if spec.labels else None
        self._timeout = timeout_secs
        self._breadcrumbs = breadcrumbs
        self._origin = time.time()  # built with the pipeline; batches are timed from here
        self._calls: Optional[TimedCalls] = None
        self._note: Optional[Breadcrumbs] = None

    @property
    def model_name(self) -> str:
        return self._spec.name

    def __getstate__(self):
        return {**self.__dict__, "_calls": None, "_note": None}

    def run(self, batch: Sequence[Element], records: List[bytes], parts: Parts,
            predict: Predict) -> List[ChunkResult]:
        """The chunks of `batch` (whose records are `records`, in order) inferred part by
        part of `parts`."""
        started = time.time()
        if self._breadcrumbs:
            self._noted().batch_started(self.model_name, batch)
        outcome = Outcome(len(records))
        for positions, decoded in parts:
            self._infer(records, positions, predict, outcome, decoded)
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

    def _infer(self, records, positions: np.ndarray, predict: Predict, outcome: "Outcome",
               decoded=None):
        """Infers records[positions] into `outcome`; `decoded`: their columns, if known."""
        batch = records if len(positions) == len(records) else [records[i] for i in positions]
        takes_records = self._decoder is None
        try:
            inputs = batch if takes_records else (
                decoded if decoded is not None else self._decoder(batch))
        except Exception as e:
            self._split_or_fail("decode", e, records, positions, predict, outcome)
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
                    self._infer(records, positions[~bad], predict, outcome)
                return
            except Exception as e:
                self._split_or_fail("preprocess", e, records, positions, predict, outcome)
                return
        try:
            outputs = self._predict(predict, inputs)
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
                self._infer(records, positions[i:i + 1], predict, outcome)
            return
        except Exception as e:
            self._split_or_fail("inference", e, records, positions, predict, outcome)
            return
        outcome.predicted(positions, outputs)

    def _prepare(self, columns_: decoding.Columns):
        inputs = self._mapping(columns_)
        if self._spec.preprocess_fn:
            inputs = frameworks.import_object(self._spec.preprocess_fn,
                                              "preprocess_fn")(inputs)
        return inputs

    def _predict(self, predict: Predict, inputs) -> Dict[str, np.ndarray]:
        if not self._timeout:
            return predict(inputs)
        if self._calls is None:
            self._calls = TimedCalls()
        try:
            return self._calls.call(predict, inputs, self._timeout)
        except TimeoutError:
            metrics.record_timeout(self.model_name)
            raise TimeoutError(f"inference took longer than timeout_secs="
                               f"{self._timeout}") from None

    def _split_or_fail(self, stage, error, records, positions, predict, outcome):
        if len(positions) == 1:
            outcome.fail(positions[0], self._failure(stage, error, records[positions[0]]))
            return
        middle = len(positions) // 2
        for half in (positions[:middle], positions[middle:]):
            self._infer(records, half, predict, outcome)

    def _failure(self, stage: str, error: Exception, record: bytes) -> Failure:
        return Failure.from_exception(stage, error, record, self.model_name)

    def _label(self, records, outcome: "Outcome"):
        """Class names for the predicted records' scores; if that fails (the scores do not
        fit the labels), the records fail at stage "postprocess"."""
        positions, outputs = outcome.collect()
        if not len(positions):
            return
        try:
            outcome.replace(positions, self._labeller(outputs))
        except Exception as e:
            for position in positions:
                outcome.fail(position, self._failure("postprocess", e, records[position]))

    def _postprocess(self, records, outcome: "Outcome"):
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
            except Exception as e:
                outcome.fail(position, self._failure("postprocess", e, records[position]))
        outcome.replace(positions[kept], columns.from_examples(inferences,
                                                               self._spec.output_names))

    def _per_chunk(self, batch: Sequence[Element], outcome: "Outcome") -> List[ChunkResult]:
        """The batch's outcome split back into its chunks: slices of the output arrays
        (the PredictionLogs a framework wrote itself become each result's own)."""
        positions, outputs = outcome.collect()
        logs = outputs.get(PREDICTION_LOG)
        if logs is not None:
            outputs = {name: column for name, column in outputs.items()
                       if name != PREDICTION_LOG}
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
                                        for name, column in outputs.items()}, failures,
                                       None if logs is None else logs[first:cut]))
            first, start = cut, end
        return results

    def _noted(self) -> Breadcrumbs:
        if self._note is None:
            self._note = Breadcrumbs(self._breadcrumbs)
        return self._note


class Outcome:
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
