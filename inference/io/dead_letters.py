"""Dead letters on their way to a sink: counted once, written as tf.Examples, read back.

Every stage's failures meet in `CountFailures`, the one place they are counted (per model,
split and stage), before a sink: `WriteFailures` for files, a Pub/Sub topic in streaming.
"""
from typing import Any, Callable, Iterator, List, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inference.data.failures import Failure
from inference.io import tfrecord
from inference.io.records import WriteRecordChunks
from inference.observe import metrics


class DeadLetters:
    """Counts a Failure (per model, split and stage; a read failure as the records it
    stands for) and returns it as its sink takes it (`encoder(failure)`, or the Failure):
    the one place failures are counted. Called by `CountFailures`, or by the steps that
    make the failures where a step less per bundle matters (streaming), which call
    `finish` at the end of each bundle. A subclass may deliver the dead letter itself
    (see `inference.io.pubsub.PublishDeadLetters`) and return None: nothing to yield."""

    def __init__(self, encoder: Optional[Callable[[Failure], Any]] = None):
        self._encoder = encoder
        self._counters = {}

    def __getstate__(self):  # counters are made where the failures are, on the worker
        return {**self.__dict__, "_counters": {}}

    def __call__(self, failure: Failure) -> Any:
        name = (metrics.FAILURES, failure.model, failure.split, failure.stage)
        if name not in self._counters:
            self._counters[name] = metrics.counter(*name)
        self._counters[name].inc(failure.lost)
        return failure if self._encoder is None else self._encoder(failure)

    def finish(self):
        """The end of a bundle: dead letters delivered here are delivered by now."""


class CountFailures(beam.DoFn):
    """Failures -> counted, and encoded by `encoder` when given, on their way to a
    dead-letter sink; or handled by `dead_letters` (see `DeadLetters`)."""

    def __init__(self, encoder: Optional[Callable[[Failure], Any]] = None,
                 dead_letters: Optional[DeadLetters] = None):
        self._dead_letters = dead_letters or DeadLetters(encoder)

    def process(self, failure: Failure):
        value = self._dead_letters(failure)
        if value is not None:
            yield value

    def finish_bundle(self):
        self._dead_letters.finish()


class WriteFailures(beam.PTransform):
    """Failures -> counted, then gzipped TFRecords of tf.train.Example dead letters at
    `<prefix>-*.gz` (see `Failure.to_example`)."""

    def __init__(self, file_prefix: str):
        super().__init__()
        self._prefix = file_prefix

    def expand(self, failures):
        return (failures
                | "Count" >> beam.ParDo(CountFailures(_as_chunk))
                | "Write" >> WriteRecordChunks(self._prefix))


def _as_chunk(failure: Failure) -> List[bytes]:
    """A dead letter as a chunk of one record, as WriteRecordChunks takes them."""
    return [failure.to_example()]


def read_failures(pattern: str) -> Iterator[Failure]:
    """The dead letters written at `pattern` (e.g. `<failures uri>/failures-*.gz`)."""
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path, compression_type="uncompressed") as raw:
            for records in tfrecord.read_records(raw):
                yield from map(Failure.from_example, records)
