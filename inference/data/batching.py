"""Batching constants and sizes: how records group into chunks and batches.

Records move through the engine in chunks (lists of serialized records) from the source to
the sink: Beam's per-element cost (a few microseconds per transform) is more than decoding
and running a small model costs per record, so a chunk, not a record, is the element.
Beam's `BatchElements` counts a chunk as its number of records (`chunk_size`), so batch
sizes are in records as usual. A chunk fits in every model's largest batch, and a batch
holds whole chunks.
"""
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from inference.config import ModelConfig

# A model's smallest batch (Beam's first target) when its configuration sets none.
DEFAULT_MIN_BATCH_SIZE = 32
# The most records, and about the most bytes, a chunk holds: tfx_bsl decodes batches of up
# to about a thousand records at its best per-record cost, and a chunk of large records
# (images) stays small in memory.
CHUNK_RECORDS = 1024
CHUNK_BYTES = 4 << 20
# Beam's default length buckets (BatchElements._DEFAULT_BUCKET_BOUNDARIES).
DEFAULT_LENGTH_BUCKETS: Tuple[int, ...] = (16, 32, 64, 128, 256, 512)


def length_buckets(lengths: np.ndarray, boundaries: Sequence[int] = DEFAULT_LENGTH_BUCKETS,
                   most: int = 0) -> List[np.ndarray]:
    """The positions of `lengths` grouped by length bucket, shortest first: boundaries are
    lower-inclusive (as Beam's, a bisect_right), each group is ordered by length (stable)
    and cut into runs of at most `most` positions (0: no cut)."""
    if not len(lengths):
        return []
    order = np.argsort(lengths, kind="stable")
    bucket = np.searchsorted(boundaries, np.asarray(lengths)[order], side="right")
    groups = np.split(order, np.flatnonzero(np.diff(bucket)) + 1)
    if not most:
        return groups
    return [group[start:start + most] for group in groups
            for start in range(0, len(group), most)]


def chunk_size(element: Any) -> int:
    """The records of an element: `(origin, records)`, or keyed `(key, (origin, records))`
    as Beam's KeyedModelHandler batches them. BatchElements' element_size_fn."""
    value = element[1]
    return len(value[1]) if isinstance(value, tuple) else len(value)


def chunk_records(models: Iterable[ModelConfig]) -> int:
    """The most records a chunk holds: CHUNK_RECORDS, within every model's max_batch_size."""
    return min([CHUNK_RECORDS] + [m.max_batch_size for m in models if m.max_batch_size])


def records_per_chunk(sample, most: int) -> int:
    """Records per chunk for records like those of `sample` (a non-empty list of them):
    at most `most`, and about CHUNK_BYTES of them."""
    mean_size = max(1, sum(map(len, sample)) // len(sample))
    return max(1, min(most, CHUNK_BYTES // mean_size))


def min_batch_size(model: ModelConfig) -> int:
    """The model's smallest batch: its own, else DEFAULT_MIN_BATCH_SIZE within its max."""
    if model.min_batch_size:
        return model.min_batch_size
    return min(DEFAULT_MIN_BATCH_SIZE, model.max_batch_size or DEFAULT_MIN_BATCH_SIZE)


def batching_kwargs(model: ModelConfig, batch_size: Optional[int] = None) -> dict:
    """The model's batching and memory controls, as Beam ModelHandler keyword arguments.

    batch_size: the records of every batch, when its framework sets them (see
    `inference.frameworks`), in place of the model's min and max.
    """
    kwargs = {"min_batch_size": batch_size or min_batch_size(model),
              "element_size_fn": chunk_size,
              "max_batch_size": batch_size or model.max_batch_size,
              "max_batch_duration_secs": model.max_batch_duration_secs,
              "model_copies": model.model_copies}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if model.large_model:
        kwargs["large_model"] = True
    return kwargs
