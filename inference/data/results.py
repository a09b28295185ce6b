"""`ChunkResult`: one chunk's outcome for one model, columnar from the model to the sink.

A model's outputs stay batch-major arrays ({output name: [records, ...]}) from the
framework's `predict` to the encoders, which read columns; no per-record object stands
between the engine's own stages. Serialized PredictionLogs a framework builds itself
(TensorFlow signatures, through tfx_bsl) travel as the column `PREDICTION_LOG`.
"""
from typing import Any, Dict, List, Mapping, NamedTuple

import numpy as np

from inference.data.failures import Failure

# The output column of serialized PredictionLogs, for frameworks that write their own.
PREDICTION_LOG = "prediction_log"

Origin = Any  # where a chunk came from: (file, index of its first record), an event time


class ChunkResult(NamedTuple):
    """The predicted records of a chunk, in order, with their outputs; and the Failures
    of the chunk's other records.

    origin: the chunk's origin, as the source gave it (see `describe`).
    """
    model: str
    origin: Origin
    records: List[bytes]
    outputs: Dict[str, np.ndarray]
    failures: List[Failure]


def describe(origin: Origin, index: int) -> str:
    """Where record `index` of a chunk came from, as people read it: `file:record N` for
    a chunk of consecutive records of a file, the file alone otherwise, else ""."""
    if isinstance(origin, tuple) and len(origin) == 2 and isinstance(origin[0], str):
        source, start = origin
        return f"{source}:record {start + index}" if start >= 0 else source
    return ""


def part_of(origin: Origin) -> Origin:
    """The origin of some, not all, of a chunk's records: the source without positions."""
    if isinstance(origin, tuple) and len(origin) == 2 and isinstance(origin[0], str):
        return (origin[0], -1)
    return origin


class PartialPredictions(Exception):
    """What `predict` raises when some rows of the batch failed on their own: `outputs`
    of the other rows (in order), and `errors`, row -> the exception its dead letter
    reports. The batch is not split to find the failing rows: they are known."""

    def __init__(self, outputs: Mapping[str, np.ndarray], errors: Mapping[int, Exception]):
        super().__init__(f"{len(errors)} row(s) failed")
        self.outputs = dict(outputs)
        self.errors = dict(errors)
