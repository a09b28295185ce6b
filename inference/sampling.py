"""Bounded samples of a run's predictions, taken in the pipeline as it runs.

A model's sample is the `size` records whose input hashes lowest (a bottom-k sample,
crc32 of the record's bytes): memory is bounded by `size`, not by the run, no output is
read back afterwards, and since the hash is of the input record, every model of a shadow
run keeps the same records, so their predictions pair up. Each bundle keeps its own
bottom-k; one small combine merges them. The sample is written as TFRecords of
tf.Examples (the record, its split and hash, each output's values flattened), which any
TFRecord reader opens and no reader runs code from.
"""
import heapq
import itertools
import zlib
from typing import Dict, List, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from inference import examples, tfrecord
from inference.results import ChunkResult

SAMPLE_SIZE = 2000
_OUTPUT = "output/"  # feature name prefix of an output's values


class Sample(NamedTuple):
    """One sampled prediction: the input record's hash, split and bytes, and each output's
    values for it (a TensorFlow model's own PredictionLog under "prediction_log")."""
    hash: int
    split: str
    record: bytes
    outputs: Dict[str, np.ndarray]


def _bottom(samples, size: int) -> List[Sample]:
    return heapq.nsmallest(size, samples, key=lambda s: (s.hash, s.record))


class _BundleBottomK(beam.DoFn):
    """ChunkResults -> at the end of each bundle, the bundle's bottom-`size` Samples."""

    def __init__(self, size: int, split: str):
        self._size = size
        self._split = split

    def start_bundle(self):
        self._heap: List[tuple] = []  # (-hash, -order, Sample): the largest hash on top
        self._order = itertools.count()

    def process(self, result: ChunkResult):
        hashes = np.array(list(map(zlib.crc32, result.records)), dtype=np.int64)
        full = len(self._heap) >= self._size
        for row in np.flatnonzero(hashes < -self._heap[0][0]) if full else range(
                len(hashes)):
            sample = Sample(int(hashes[row]), self._split, result.records[row],
                            {name: np.asarray(column[row]).reshape(-1)
                             for name, column in result.outputs.items()})
            entry = (-sample.hash, -next(self._order), sample)
            if len(self._heap) < self._size:
                heapq.heappush(self._heap, entry)
            elif entry > self._heap[0]:
                heapq.heapreplace(self._heap, entry)

    def finish_bundle(self):
        if self._heap:
            yield window.GlobalWindows.windowed_value([entry[2] for entry in self._heap])


class _MergeBottomK(beam.CombineFn):

    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, samples):
        return _bottom(accumulator + list(samples), self._size)

    def merge_accumulators(self, accumulators):
        return _bottom([s for a in accumulators for s in a], self._size)

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
        return (parts | "Splits" >> beam.Flatten()
                | "Merge" >> beam.CombineGlobally(_MergeBottomK(self._size))
                | "Write" >> beam.Map(write_samples, self._path))


def write_samples(samples: Sequence[Sample], path: str) -> str:
    with FileSystems.create(path) as raw:
        raw.write(tfrecord.frame([examples.serialize({
            "hash": [s.hash], "split": [s.split], "record": [s.record],
            **{_OUTPUT + name: values for name, values in s.outputs.items()}})
            for s in samples]))
    return path


def read_samples(path: str) -> List[Sample]:
    """The samples written at `path` ([] when there is no file)."""
    if not FileSystems.exists(path):
        return []
    samples = []
    with FileSystems.open(path, compression_type="uncompressed") as raw:
        for records in tfrecord.read_records(raw):
            for record in records:
                example = examples.parse(record)
                names = sorted(example.features.feature)
                samples.append(Sample(
                    examples.values(example, "hash")[0],
                    examples.values(example, "split")[0].decode(),
                    examples.values(example, "record")[0],
                    {name[len(_OUTPUT):]: np.asarray(examples.values(example, name))
                     for name in names if name.startswith(_OUTPUT)}))
    return samples
