"""Dead letters on their way to a sink: counted once, written as tf.Examples, read back.

Every stage's failures meet in `CountFailures`, the one place they are counted (per model,
split and stage), before a sink: `WriteFailures` for files, a Pub/Sub topic in streaming.
"""
from typing import Any, Callable, Iterator, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inference.data.failures import Failure
from inference.io import tfrecord
from inference.io.records import WriteRecordChunks
from inference.observe import metrics


class CountFailures(beam.DoFn):
    """Counts each Failure (per model, split and stage; a read failure as the records it
    stands for) on its way to a dead-letter sink: the one place failures are counted.

    encoder: yields encoder(failure) instead, encoded for the sink in the same step."""

    def __init__(self, encoder: Optional[Callable[[Failure], Any]] = None):
        self._encoder = encoder

    def setup(self):
        self._counters = {}

    def process(self, failure: Failure):
        name = (metrics.FAILURES, failure.model, failure.split, failure.stage)
        if name not in self._counters:
            self._counters[name] = metrics.counter(*name)
        self._counters[name].inc(failure.lost)
        yield failure if self._encoder is None else self._encoder(failure)


class WriteFailures(beam.PTransform):
    """Failures -> counted, then gzipped TFRecords of tf.train.Example dead letters at
    `<prefix>-*.gz` (see `Failure.to_example`)."""

    def __init__(self, file_prefix: str):
        super().__init__()
        self._prefix = file_prefix

    def expand(self, failures):
        return (failures
                | "Count" >> beam.ParDo(CountFailures())
                | "ToExamples" >> beam.Map(lambda failure: [failure.to_example()])
                | "Write" >> WriteRecordChunks(self._prefix))


def read_failures(pattern: str) -> Iterator[Failure]:
    """The dead letters written at `pattern` (e.g. `<failures uri>/failures-*.gz`)."""
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path, compression_type="uncompressed") as raw:
            for records in tfrecord.read_records(raw):
                yield from map(Failure.from_example, records)
