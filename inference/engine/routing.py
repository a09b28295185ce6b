"""Record-level routing for multi-model inference: A/B shares, keys, model chaining.

Records travel in chunks `(origin, records)` (see `inference.data.batching`); routing splits a
chunk into one part per model or key and nothing else changes. A record is parsed only when
routing needs one of its feature values.
"""
import bisect
import hashlib
from typing import Dict, List

import apache_beam as beam
import numpy as np

from inference.config import InferenceConfig
from inference.data import examples
from inference.data.columns import PREDICTION_LOG
from inference.data.failures import FAILURES_TAG, Failure
from inference.data.results import ChunkResult, describe, part_of
from inference.observe import metrics


def cumulative(config: InferenceConfig) -> List[float]:
    """Upper bounds of each model's share of [0, 1), for A/B routing."""
    shares = config.fractions or [1.0 / len(config.models)] * len(config.models)
    return list(np.cumsum(shares))[:-1]


def ab_index(record: bytes, num_models: int, bounds: List[float], feature: str) -> int:
    """The model index for `record`: a stable hash of its key into [0, 1), then the share.

    The key is the record's `feature` value (missing: empty), or the record itself when
    there is no feature or the record does not parse (its model then dead-letters it).
    """
    key = record
    if feature:
        try:
            value = examples.first_value(record, feature)
            key = (value if value is not None else "").encode()
        except Exception:
            pass
    point = int.from_bytes(hashlib.md5(key).digest()[:8], "big") / 2.0**64
    return min(bisect.bisect_right(bounds, point), num_models - 1)


class SplitAB(beam.DoFn):
    """chunk -> one part per model, on the output named by the model's index."""

    def __init__(self, config: InferenceConfig):
        self._count = len(config.models)
        self._bounds = cumulative(config)
        self._feature = config.routing_feature

    def process(self, chunk):
        origin, records = chunk
        parts: Dict[int, List[bytes]] = {}
        for record in records:
            index = ab_index(record, self._count, self._bounds, self._feature)
            parts.setdefault(index, []).append(record)
        whole = len(parts) == 1
        for index, part in parts.items():
            yield beam.pvalue.TaggedOutput(str(index),
                                           (origin if whole else part_of(origin), part))


class KeyRecords(beam.DoFn):
    """chunk -> (routing value, part) per value, counted per key; records with no model
    for their key fail at stage "routing"."""

    def __init__(self, config: InferenceConfig, split: str = ""):
        self._feature = config.routing_feature
        self._keys = {key for model in config.models for key in model.keys}
        self._split = split

    def setup(self):
        self._counters = {key: metrics.counter(metrics.ROUTED, self._split, key)
                          for key in self._keys}

    def process(self, chunk):
        origin, records = chunk
        parts: Dict[str, List[bytes]] = {}
        for i, record in enumerate(records):
            try:
                value = examples.first_value(record, self._feature)
            except Exception as e:
                yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                    "routing", e, record, source=describe(origin, i)))
                continue
            if value in self._keys:
                parts.setdefault(value, []).append(record)
                continue
            problem = (f"feature {self._feature!r} is missing" if value is None else
                       f"no model serves {self._feature}={value!r}")
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure(
                "routing", "KeyError", f"{problem}; keys served: {sorted(self._keys)}",
                record, source=describe(origin, i)))
        whole = len(parts) == 1 and sum(map(len, parts.values())) == len(records)
        for value, part in parts.items():
            self._counters[value].inc(len(part))
            yield value, (origin if whole else part_of(origin), part)


def rechunk(keyed_chunks, size: int):
    """(key, chunks), as GroupByKey gives it -> (key, chunk of at most `size` records)."""
    key, chunks = keyed_chunks
    chunks = list(chunks)
    origin = part_of(chunks[0][0]) if chunks else None
    records = [record for _, part in chunks for record in part]
    for start in range(0, len(records), size):
        yield key, (origin, records[start:start + size])


def enrich(result: ChunkResult):
    """A chunk's predicted records, each with the model's outputs added as features named
    `<model>_<output>` (and a TensorFlow signature's own PredictionLog as
    `<model>_prediction_log`): the next model of a sequence reads them."""
    columns = dict(result.outputs)
    if result.prediction_logs is not None:
        columns[PREDICTION_LOG] = result.prediction_logs
    records = [examples.with_features(record, {
        f"{result.model}_{name}": column[i] for name, column in columns.items()})
        for i, record in enumerate(result.records)]
    origin = result.origin if not result.failures else part_of(result.origin)
    return origin, records
