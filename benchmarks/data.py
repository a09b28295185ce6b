"""Benchmark records: taxi rows resampled with a fixed seed, written as an Examples artifact.

Eight float features of template/data/taxi/data.csv (missing values -> the column mean);
rows are drawn with replacement so any N can be generated. Records are serialized from a
template (all records of 8 single-float features have the same layout, only the values
differ), which is what `tf.train.Example(...).SerializeToString()` gives, ~50x faster.
"""
import csv
import os
from typing import List, Sequence

import numpy as np

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI_CSV = os.path.join(PROJECT_DIR, "template", "data", "taxi", "data.csv")
FEATURES = ["trip_miles", "fare", "trip_seconds", "trip_start_hour", "trip_start_day",
            "trip_start_month", "pickup_latitude", "pickup_longitude"]
SPLIT = "eval"


def taxi_matrix(path: str = TAXI_CSV, features: Sequence[str] = FEATURES) -> np.ndarray:
    """[rows, features] float32; missing values are the column's mean."""
    with open(path, newline="") as f:
        rows = [[row[name] for name in features] for row in csv.DictReader(f)]
    matrix = np.array([[float(v) if v != "" else np.nan for v in row] for row in rows],
                      dtype=np.float64)
    means = np.nanmean(matrix, axis=0)
    missing = np.isnan(matrix)
    matrix[missing] = np.take(means, np.nonzero(missing)[1])
    return matrix.astype(np.float32)


def resample(matrix: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return matrix[rng.randint(0, len(matrix), size=n)]


def _example(values: Sequence[float], features: Sequence[str]) -> bytes:
    import tensorflow as tf
    feature = {name: tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
               for name, v in zip(features, values)}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


class ExampleSerializer:
    """Serializes rows of float32 values as tf.Examples with one float per feature."""

    def __init__(self, features: Sequence[str] = FEATURES):
        self.features = list(features)
        # Distinct sentinels locate each feature's 4 value bytes in the template.
        sentinels = np.array([1e30 + i * 1e25 for i in range(len(features))], np.float32)
        self.template = _example(sentinels, features)
        self.offsets = []
        for value in sentinels:
            raw = value.astype("<f4").tobytes()
            offset = self.template.find(raw)
            if offset < 0 or self.template.find(raw, offset + 1) >= 0:
                raise RuntimeError("cannot locate feature values in the Example template")
            self.offsets.append(offset)

    def __call__(self, matrix: np.ndarray) -> List[bytes]:
        matrix = np.ascontiguousarray(matrix, dtype="<f4")
        count, size = len(matrix), len(self.template)
        buffer = np.frombuffer(self.template * count, dtype=np.uint8).reshape(count, size).copy()
        for j, offset in enumerate(self.offsets):
            buffer[:, offset:offset + 4] = matrix[:, j:j + 1].view(np.uint8)
        flat = buffer.tobytes()
        return [flat[i * size:(i + 1) * size] for i in range(count)]

    def check(self, matrix: np.ndarray):
        """The template's records equal TensorFlow's own serialization of the same rows."""
        for row, record in zip(matrix[:16], self(matrix[:16])):
            expected = _example(row, self.features)
            if record != expected:
                raise AssertionError("templated Example differs from tf.train.Example")


def write_examples(root: str, matrix: np.ndarray, shards: int,
                   features: Sequence[str] = FEATURES, chunk: int = 50_000) -> str:
    """Gzipped TFRecord shards laid out as ExampleGen writes them; returns the split folder."""
    import tensorflow as tf
    serializer = ExampleSerializer(features)
    serializer.check(matrix)
    folder = os.path.join(root, f"Split-{SPLIT}")
    os.makedirs(folder, exist_ok=True)
    shards = max(1, min(shards, len(matrix)))
    bounds = np.linspace(0, len(matrix), shards + 1).astype(int)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for shard in range(shards):
        path = os.path.join(folder, f"data_tfrecord-{shard:05d}-of-{shards:05d}.gz")
        with tf.io.TFRecordWriter(path, options) as writer:
            for start in range(bounds[shard], bounds[shard + 1], chunk):
                stop = min(start + chunk, bounds[shard + 1])
                for record in serializer(matrix[start:stop]):
                    writer.write(record)
    return folder


def examples_artifact(root: str):
    """The Examples artifact for records written by `write_examples(root, ...)`."""
    from tfx.types import artifact_utils, standard_artifacts
    artifact = standard_artifacts.Examples()
    artifact.uri = root
    artifact.split_names = artifact_utils.encode_split_names([SPLIT])
    return artifact


def record_files(root: str) -> List[str]:
    folder = os.path.join(root, f"Split-{SPLIT}")
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.endswith(".gz"))
