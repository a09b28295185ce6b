"""`ChunkResult`: one chunk's outcome for one model, columnar from the model to the sink.

A model's outputs stay batch-major arrays ({output name: [records, ...]}) from the
framework's `predict` to the encoders, which read columns; no per-record object stands
between the engine's own stages. Serialized PredictionLogs a framework builds itself
(TensorFlow signatures, through tfx_bsl) are the result's `prediction_logs`.
"""
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

from inference.data import columns
from inference.data.failures import Failure


class FilePosition(NamedTuple):
    """Where a chunk of a file came from: the file, and the index of the chunk's first
    record in it; `first` is -1 when the chunk's records are not consecutive there."""
    path: str
    first: int = -1


class EventTime(NamedTuple):
    """A streamed chunk's origin: its message's event time, in seconds since the epoch."""
    seconds: float


# Where a chunk came from: a file position (bounded runs), an event time (streaming), or
# None where nothing is known.
Origin = Optional[Union[FilePosition, EventTime]]


class ChunkResult(NamedTuple):
    """The predicted records of a chunk, in order, with their outputs; and the Failures
    of the chunk's other records.

    origin: the chunk's origin, as the source gave it (see `describe`).
    prediction_logs: the records' serialized PredictionLogs, when the framework wrote them
      itself (a TensorFlow signature); None otherwise.
    """
    model: str
    origin: Origin
    records: List[bytes]
    outputs: Dict[str, np.ndarray]
    failures: List[Failure]
    prediction_logs: Optional[Sequence[bytes]] = None

    def take(self, rows: Sequence[int]) -> "ChunkResult":
        """The predictions of `rows` alone (their records, outputs and logs)."""
        logs = self.prediction_logs
        return self._replace(records=[self.records[i] for i in rows],
                             outputs=columns.take(self.outputs, rows),
                             prediction_logs=None if logs is None else [logs[i] for i in rows])


def describe(origin: Origin, index: int) -> str:
    """Where record `index` of a chunk came from, as people read it: `file:record N` for
    a chunk of consecutive records of a file, the file alone otherwise, else ""."""
    if isinstance(origin, FilePosition):
        return f"{origin.path}:record {origin.first + index}" if origin.first >= 0 \
            else origin.path
    return ""


def part_of(origin: Origin) -> Origin:
    """The origin of some, not all, of a chunk's records: the file without positions."""
    return FilePosition(origin.path) if isinstance(origin, FilePosition) else origin


class PartialPredictions(Exception):
    """What `predict` raises when some rows of the batch failed on their own: `outputs`
    of the other rows (in order), and `errors`, row -> the exception its dead letter
    reports. The batch is not split to find the failing rows: they are known."""

    def __init__(self, outputs: Mapping[str, np.ndarray], errors: Mapping[int, Exception]):
        super().__init__(f"{len(errors)} row(s) failed")
        self.outputs = dict(outputs)
        self.errors = dict(errors)
