"""Sources and sinks of the engine.

`ReadRecords` reads TFRecord files tolerantly: Beam's TFRecord source fails the whole run on
the first truncated or corrupt file, so each file is read here with TensorFlow's C++ record
reader and a damaged file ends as a dead letter (stage "read", with the file and the number
of records read before the damage) instead of killing the run.
"""
from typing import Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import fileio

from inference.failures import FAILURES_TAG, Failure
from inference.transforms import COUNTERS_NAMESPACE, examples_counter, failures_counter

_COMPRESSION = {".gz": "GZIP", ".gzip": "GZIP", ".zlib": "ZLIB"}


class _ReadTFRecordFile(beam.DoFn):

    def __init__(self, split: str):
        self._split = split

    def setup(self):
        self._records = beam.metrics.Metrics.counter(COUNTERS_NAMESPACE,
                                                     examples_counter(self._split))
        self._failures = beam.metrics.Metrics.counter(
            COUNTERS_NAMESPACE, failures_counter("", self._split, "read"))

    def process(self, path: str):
        compression = next((c for suffix, c in _COMPRESSION.items() if path.endswith(suffix)),
                           "")
        count = 0
        try:
            for record in tf.compat.v1.io.tf_record_iterator(
                    path, tf.io.TFRecordOptions(compression)):
                count += 1
                self._records.inc()
                yield record
        except Exception as e:  # pylint: disable=broad-except
            self._failures.inc()
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                "read", e, split=self._split,
                source=f"{path}: unreadable after {count} record(s)"))


class ReadRecords(beam.PTransform):
    """File patterns of TFRecord files -> serialized records (`main`) and read failures.

    Records are counted as examples in of `split`.
    """

    def __init__(self, file_patterns: Sequence[str], split: str = ""):
        super().__init__()
        self._patterns = list(file_patterns)
        self._split = split

    def expand(self, pbegin):
        return (pbegin
                | "Patterns" >> beam.Create(self._patterns)
                | "Match" >> fileio.MatchAll()
                | "Paths" >> beam.Map(lambda metadata: metadata.path)
                | "Distribute" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadTFRecordFile(self._split)).with_outputs(
                    FAILURES_TAG, main="main"))


class WriteFailures(beam.PTransform):
    """Failures -> gzipped TFRecords of tf.train.Example dead letters at `<prefix>-*.gz`."""

    def __init__(self, file_prefix: str):
        super().__init__()
        self._prefix = file_prefix

    def expand(self, failures):
        return (failures
                | "ToExamples" >> beam.Map(Failure.to_example)
                | "Write" >> beam.io.WriteToTFRecord(self._prefix, file_name_suffix=".gz"))
