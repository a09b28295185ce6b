"""Record-level routing for multi-model inference: A/B shares, keys, model chaining.

Records travel in chunks (see `inference.handler`); routing splits a chunk into one
sub-chunk per model or key. Each record is parsed only when routing needs a feature value.
"""
import bisect
import hashlib
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
import numpy as np

from inference.config import InferenceConfig
from inference.encoding import named_outputs, text
from inference.failures import FAILURES_TAG, Failure, example_class


def feature_value(record: bytes, feature: str) -> Optional[str]:
    """The first value of `feature` in a serialized tf.Example, as text; None if absent."""
    values = example_class().FromString(record).features.feature.get(feature)
    if values is None:
        return None
    kind = values.WhichOneof("kind")
    items = getattr(values, kind).value if kind else []
    if not items:
        return None
    first = items[0]
    return first.decode() if isinstance(first, bytes) else str(first)


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
            value = feature_value(record, feature)
            key = (value if value is not None else "").encode()
        except Exception:  # pylint: disable=broad-except
            pass
    point = int.from_bytes(hashlib.md5(key).digest()[:8], "big") / 2.0**64
    return min(bisect.bisect_right(bounds, point), num_models - 1)


class SplitAB(beam.DoFn):
    """chunk -> one sub-chunk per model, on the output named by the model's index."""

    def __init__(self, config: InferenceConfig):
        self._count = len(config.models)
        self._bounds = cumulative(config)
        self._feature = config.routing_feature

    def process(self, chunk: Sequence[bytes]):
        parts: Dict[int, List[bytes]] = {}
        for record in chunk:
            index = ab_index(record, self._count, self._bounds, self._feature)
            parts.setdefault(index, []).append(record)
        for index, part in parts.items():
            yield beam.pvalue.TaggedOutput(str(index), part)


class KeyRecords(beam.DoFn):
    """chunk -> (routing value, sub-chunk) per value; records with no model for their key
    fail."""

    def __init__(self, config: InferenceConfig):
        self._feature = config.routing_feature
        self._keys = {key for model in config.models for key in model.keys}

    def process(self, chunk: Sequence[bytes]):
        parts: Dict[str, List[bytes]] = {}
        for record in chunk:
            try:
                value = feature_value(record, self._feature)
            except Exception as e:  # pylint: disable=broad-except
                yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                    "decode", e, record))
                continue
            if value in self._keys:
                parts.setdefault(value, []).append(record)
                continue
            problem = (f"feature {self._feature!r} is missing" if value is None else
                       f"no model serves {self._feature}={value!r}")
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure(
                "routing", "KeyError", f"{problem}; keys served: {sorted(self._keys)}",
                record))
        yield from parts.items()


def rechunk(keyed_chunks, size: int):
    """(key, chunks), as GroupByKey gives it -> (key, chunk of at most `size` records)."""
    key, chunks = keyed_chunks
    records = [record for chunk in chunks for record in chunk]
    for start in range(0, len(records), size):
        yield key, records[start:start + size]


def enrich_chunk(results, output_names=()) -> List[bytes]:
    """`enrich` of each result of a chunk."""
    return [enrich(result, output_names) for result in results]


def enrich(result, output_names=()) -> bytes:
    """The result's record with the model's outputs added as `<model>_<output>` features."""
    example = example_class().FromString(result.example)
    for name, value in named_outputs(result.inference, output_names).items():
        feature = example.features.feature[f"{result.model_id}_{name}"]
        values = np.asarray(value).reshape(-1)
        if values.dtype.kind in "iub":
            feature.int64_list.value.extend(values.astype(np.int64).tolist())
        elif values.dtype.kind == "f":
            feature.float_list.value.extend(values.astype(np.float32).tolist())
        else:
            feature.bytes_list.value.extend(
                text(v) for v in values)
    return example.SerializeToString()
