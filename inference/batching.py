"""Batching constants and sizes: how records group into chunks and batches.

Records move through the engine in chunks (lists of serialized records) from the source to
the sink: Beam's per-element cost (a few microseconds per transform) is more than decoding
and running a small model costs per record, so a chunk, not a record, is the element.
Beam's `BatchElements` counts a chunk as its number of records (`chunk_size`), so batch
sizes are in records as usual; a chunk must fit in the smallest batch, so chunks hold at
most the model's `min_batch_size` records.
"""
from typing import Any, Optional, Tuple

from inference.config import ModelConfig

# A model's smallest batch when its configuration sets none, and so the most records a
# chunk holds.
DEFAULT_MIN_BATCH_SIZE = 32
# Beam's default length buckets (BatchElements._DEFAULT_BUCKET_BOUNDARIES).
DEFAULT_LENGTH_BUCKETS: Tuple[int, ...] = (16, 32, 64, 128, 256, 512)


def chunk_size(element: Any) -> int:
    """The records of an element: `(origin, records)`, or keyed `(key, (origin, records))`
    as Beam's KeyedModelHandler batches them. BatchElements' element_size_fn."""
    value = element[1]
    return len(value[1]) if isinstance(value, tuple) else len(value)


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
