"""Bounded samples of a run's predictions, taken in the pipeline as it runs.

A model's sample is the `size` records whose input hashes lowest (a bottom-k sample,
crc32c of the record's bytes): memory is bounded by `size`, not by the run, no output is
read back afterwards, and since the hash is of the input record, every model of a shadow
run keeps the same records, so their predictions pair up. Each bundle keeps its own
bottom-k, as columns (one array per output, as the engine's results are), and one small
combine merges them. The sample is written as tf.Examples of columns (the records, their
splits and hashes, each output's values flattened with their counts; one Example for all
but large records) in a TFRecord file, which any TFRecord reader opens and no reader runs
code from.
"""
from typing import Dict, List, NamedTuple, Sequence

import apache_beam as beam
import google_crc32c
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from inference.data import columns, examples
from inference.data.results import ChunkResult
from inference.io import tfrecord

SAMPLE_SIZE = 2000
_NO_HASH = 1 << 32  # above every crc32c
# A record's hash, which orders the samples: the same record gets the same hash from
# every model, so a shadow run's samples pair up.
record_hash = google_crc32c.value
_OUTPUT = "output/"  # feature name prefix of an output's values
_COUNTS = "counts/"  # feature name prefix of an output's value count per sample
PART_BYTES = 64 << 20  # about the most a written sample's tf.Example holds


class Sample(NamedTuple):
    """One sampled prediction: the input record's hash, split and bytes, and each output's
    values for it (a TensorFlow model's own PredictionLog under "prediction_log")."""
    hash: int
    split: str
    record: bytes
    outputs: Dict[str, np.ndarray]


class SampleSet(NamedTuple):
    """Samples as columns: row i is one record's hash, split, bytes and outputs."""
    hashes: np.ndarray
    splits: List[str]
    records: List[bytes]
    outputs: Dict[str, np.ndarray]

    def bottom(self, size: int) -> "SampleSet":
        """The rows of the `size` lowest hashes (ties: the first rows)."""
        if len(self.hashes) <= size:
            return self
        rows = np.argsort(self.hashes, kind="stable")[:size]
        return SampleSet(self.hashes[rows], [self.splits[i] for i in rows],
                         [self.records[i] for i in rows], columns.take(self.outputs, rows))


def concatenate(sets: Sequence[SampleSet]) -> SampleSet:
    sets = [s for s in sets if len(s.hashes)]
    if not sets:
        return SampleSet(np.zeros(0, np.int64), [], [], {})
    return SampleSet(np.concatenate([s.hashes for s in sets]),
                     [split for s in sets for split in s.splits],
                     [record for s in sets for record in s.records],
                     columns.concatenate([s.outputs for s in sets]))


class _BundleBottomK(beam.DoFn):
    """ChunkResults -> at the end of each bundle, the bundle's bottom-`size` SampleSet."""

    def __init__(self, size: int, split: str):
        self._size = size
        self._split = split

    def start_bundle(self):
        self._kept: List[SampleSet] = []
        self._count = 0
        self._below = _NO_HASH  # a record is kept when its hash is below this

    def process(self, result: ChunkResult):
        hashes = np.fromiter(map(record_hash, result.records), np.int64, len(result.records))
        rows = np.flatnonzero(hashes < self._below)
        if not len(rows):
            return
        self._kept.append(SampleSet(hashes[rows], [self._split] * len(rows),
                                    [result.records[i] for i in rows],
                                    columns.take(_columns(result), rows)))
        self._count += len(rows)
        if self._count >= 2 * self._size:  # keep memory at a few samples' worth
            kept = concatenate(self._kept).bottom(self._size)
            self._kept, self._count = [kept], len(kept.hashes)
            self._below = int(kept.hashes.max())

    def finish_bundle(self):
        if self._kept:
            yield window.GlobalWindows.windowed_value(
                concatenate(self._kept).bottom(self._size))


def _columns(result: ChunkResult) -> Dict[str, np.ndarray]:
    """A result's outputs, and its PredictionLogs (a TensorFlow model's own) under
    PREDICTION_LOG: what a sample keeps."""
    if result.prediction_logs is None:
        return result.outputs
    return {**result.outputs, columns.PREDICTION_LOG: columns.objects(result.prediction_logs)}


class _MergeBottomK(beam.CombineFn):

    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self):
        return concatenate([])

    def add_input(self, accumulator, sample_set):
        return concatenate([accumulator, sample_set]).bottom(self._size)

    def merge_accumulators(self, accumulators):
        return concatenate(list(accumulators)).bottom(self._size)

    def extract_output(self, accumulator):
        return accumulator


class SamplePredictions(beam.PTransform):
    """{split: a model's ChunkResults} -> its sample written at `path` (TFRecords)."""

    def __init__(self, path: str, size: int = SAMPLE_SIZE):
        super().__init__()
        self._path = path
        self._size = size

    def expand(self, by_split):
        parts = [results | f"BottomK[{split}]" >> beam.ParDo(_BundleBottomK(self._size, split))
                 for split, results in sorted(by_split.items())]
        merged = parts[0] if len(parts) == 1 else parts | "Splits" >> beam.Flatten()
        return (merged
                | "Merge" >> beam.CombineGlobally(_MergeBottomK(self._size)).without_defaults()
                | "Write" >> beam.Map(lambda kept: write_samples(kept, self._path)))


def write_samples(kept: SampleSet, path: str, part_bytes: int = PART_BYTES) -> str:
    """Writes a sample as tf.Examples of columns, each of consecutive samples holding about
    `part_bytes` at most (a protobuf message cannot pass 2 GB; 2,000 photos can): the
    samples' hashes, splits and records, and per output every sample's values, flattened
    and in order, with their counts."""
    outputs = {name: [_flat(value) for value in column] for name, column in kept.outputs.items()}
    sizes = [len(record) + sum(_size(rows[i]) for rows in outputs.values())
             for i, record in enumerate(kept.records)]
    with FileSystems.create(path) as raw:
        start = 0
        while start < len(sizes):
            end, total = start + 1, sizes[start]
            while end < len(sizes) and total + sizes[end] <= part_bytes:
                total += sizes[end]
                end += 1
            features = {"hash": kept.hashes[start:end], "split": list(kept.splits[start:end]),
                        "record": list(kept.records[start:end])}
            for name, rows in outputs.items():
                part = rows[start:end]
                features[_COUNTS + name] = np.array([len(row) for row in part], np.int64)
                features[_OUTPUT + name] = np.concatenate(part)
            raw.write(tfrecord.frame([examples.serialize(features)]))
            start = end
    return path


def _size(values: np.ndarray) -> int:
    """About the bytes of one sample's values of an output, serialized."""
    if values.dtype != object:
        return values.nbytes
    return sum(len(v) if isinstance(v, (bytes, str)) else 64 for v in values)


def _flat(value) -> np.ndarray:
    """One sample's values of an output, flattened; bytes and text stay objects (NumPy's
    fixed-width bytes drop trailing NUL bytes, as a serialized proto may end)."""
    array = np.asarray(value)
    if array.dtype.kind in "SU":
        array = np.asarray(value, dtype=object)
    return array.reshape(-1)


def read_samples(path: str) -> List[Sample]:
    """The samples written at `path` ([] when there is no file)."""
    if not FileSystems.exists(path):
        return []
    samples = []
    with FileSystems.open(path, compression_type="uncompressed") as raw:
        for records in tfrecord.read_records(raw):
            for record in records:
                samples += _samples(examples.parse(record))
    return samples


def _samples(example) -> List[Sample]:
    outputs = {}
    for name in sorted(example.features.feature):
        if name.startswith(_OUTPUT):
            output = name[len(_OUTPUT):]
            values = examples.values(example, name)
            array = np.asarray(values, dtype=object if values and isinstance(
                values[0], bytes) else None)
            ends = np.cumsum(examples.values(example, _COUNTS + output))
            outputs[output] = np.split(array, ends[:-1])
    return [Sample(h, split.decode(), record, {name: rows[i] for name, rows in outputs.items()})
            for i, (h, split, record) in enumerate(zip(examples.values(example, "hash"),
                                                       examples.values(example, "split"),
                                                       examples.values(example, "record")))]
