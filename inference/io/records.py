"""TFRecord files in and out, in chunks of records.

`ReadRecords` reads TFRecord files tolerantly (see `inference.io.tfrecord`): a damaged file
ends as a dead letter (stage "read") naming the file, what was read and what was lost,
instead of killing the run; compression is found from each file's content. It yields
chunks `(origin, records)`, the origin a `FilePosition` (the file and the index of the
chunk's first record), and `WriteRecordChunks` writes chunks back as TFRecords, so no stage
in between pays Beam's per-element cost per record.
"""
import logging
import posixpath
import uuid
from typing import List, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window
from apache_beam.utils.windowed_value import WindowedValue

from inference.data.batching import CHUNK_RECORDS, records_per_chunk
from inference.data.failures import FAILURES_TAG, Failure
from inference.data.results import FilePosition
from inference.io import publish, tfrecord
from inference.observe import metrics, progress


def estimate_lost(records_read: int, consumed: int, size: int) -> int:
    """Records a file damaged after `consumed` of its `size` bytes is estimated to have
    lost, from the bytes per record before the damage: at least the one that broke."""
    if not records_read or not consumed:
        return 0
    return max(1, round(records_read * max(size - consumed, 0) / consumed))


class _ReadTFRecordFile(beam.DoFn):

    def __init__(self, split: str, chunk_size: int):
        self._split = split
        self._chunk_size = chunk_size

    def setup(self):
        self._read = metrics.counter(metrics.EXAMPLES_IN, self._split)
        self._bytes = metrics.counter(metrics.BYTES_READ, self._split)
        self._damaged = metrics.counter(metrics.DAMAGED_FILES, self._split)
        self._unreadable = metrics.counter(metrics.UNREADABLE_FILES, self._split)
        self._unread = metrics.counter(metrics.UNREAD_BYTES, self._split)
        self._unreadable_bytes = metrics.counter(metrics.UNREADABLE_BYTES, self._split)

    def process(self, file):  # a FileMetadata of MatchAll
        path, size = file.path, file.size_in_bytes
        chunk, count, limit = [], 0, None
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
                for records in tfrecord.read_records(progress.counted(raw)):
                    if not records:
                        continue
                    limit = limit or records_per_chunk(records, self._chunk_size)
                    chunk += records
                    whole = len(chunk) - len(chunk) % limit
                    for start in range(0, whole, limit):
                        yield self._emit(path, count + start, chunk[start:start + limit])
                    count += whole
                    chunk = chunk[whole:]
        except tfrecord.DamagedFile as e:
            # What was read before the damage goes on; the rest is a dead letter.
            read = count + len(chunk)
            lost = estimate_lost(read, e.consumed, size)
            self._unread.inc(max(size - e.consumed, 0) if read else size)
            if read:
                self._damaged.inc()
                self._bytes.inc(min(e.consumed, size))
            else:
                self._unreadable.inc()
                self._unreadable_bytes.inc(size)
            where = (f"{path}: unreadable after {read} record(s) and {e.consumed} of "
                     f"{size} bytes; about {lost} record(s) lost" if read else
                     f"{path}: unreadable from its start ({size} bytes)")
            logging.warning("%s: %s", where, e)
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure(
                "read", "DamagedFile", str(e), split=self._split, source=where, lost=lost))
        else:
            self._bytes.inc(size)
        if chunk:
            yield self._emit(path, count, chunk)

    def _emit(self, path: str, start: int, records: List[bytes]):
        self._read.inc(len(records))
        return FilePosition(path, start), records


class ReadRecords(beam.PTransform):
    """File patterns of TFRecord files -> chunks `((file, first index), records)` of at most
    `chunk_size` records and about `batching.CHUNK_BYTES` (`main`), and read failures
    (`failures`).

    Records are counted as examples in of `split`.
    """

    def __init__(self, file_patterns: Sequence[str], split: str = "",
                 chunk_size: int = CHUNK_RECORDS):
        super().__init__()
        self._patterns = list(file_patterns)
        self._split = split
        self._chunk_size = chunk_size

    def expand(self, pbegin):
        return _matched_files(pbegin, self._patterns) | "Read" >> beam.ParDo(
            _ReadTFRecordFile(self._split, self._chunk_size)).with_outputs(FAILURES_TAG,
                                                                           main="main")


def _matched_files(pbegin, patterns: Sequence[str]):
    """The FileMetadata of every file the patterns match (their sizes told to the progress
    tracker), spread over the workers (the files, not the few patterns, are reshuffled)."""
    return (pbegin
            | "Patterns" >> beam.Create(patterns, reshuffle=False)
            | "Match" >> fileio.MatchAll()
            | "Progress" >> beam.Map(progress.input_file)
            | "Distribute" >> beam.Reshuffle())


class _StageChunks(beam.DoFn):
    """Writes each bundle's chunks, in TFRecord framing (gzipped at tfrecord.GZIP_LEVEL
    for a `.gz` suffix), into a new file of the folder `staging`, opened at the bundle's
    first chunk; yields its path when the bundle ends."""

    def __init__(self, staging: str, suffix: str):
        self._staging = staging
        self._suffix = suffix
        self._file = self._path = None

    def start_bundle(self):
        self.teardown()  # a failed bundle's file, were this DoFn kept: it stays unpublished

    def process(self, records: Sequence[bytes]):
        if not records:  # a staged file holds records: publishing reads none of them
            return
        if self._file is None:
            self._path = posixpath.join(self._staging, f"{uuid.uuid4().hex}{self._suffix}")
            raw = FileSystems.create(self._path, mime_type="application/octet-stream",
                                     compression_type=CompressionTypes.UNCOMPRESSED)
            self._file = tfrecord.GzipWriter(raw) if self._suffix.endswith(".gz") else raw
        self._file.write(tfrecord.frame(records))

    def finish_bundle(self):
        if self._file is not None:
            self._file.close()
            self._file = None
            yield WindowedValue(self._path, window.GlobalWindow().max_timestamp(),
                                [window.GlobalWindow()])

    def teardown(self):  # a failed bundle's file: closed, and left to the staging folder
        if self._file is not None:
            file, self._file = self._file, None
            file.close()


class StageRecordChunks(beam.PTransform):
    """Chunks of serialized records (a bounded PCollection) -> files in the folder
    `staging` (one per bundle that held a record), for `publish.PublishShards` to number;
    their paths, in the global window."""

    def __init__(self, staging: str, file_name_suffix: str = publish.SUFFIX):
        super().__init__()
        self._staging = staging
        self._suffix = file_name_suffix

    def expand(self, chunks):
        if not chunks.is_bounded:
            raise ValueError("record files are written from a bounded PCollection: an "
                             "unbounded one would never be published")
        if not isinstance(chunks.windowing.windowfn, window.GlobalWindows):
            chunks = chunks | "Unwindowed" >> beam.WindowInto(window.GlobalWindows())
        return chunks | "Stage" >> beam.ParDo(_StageChunks(self._staging, self._suffix))


class WriteRecordChunks(beam.PTransform):
    """Chunks of serialized records -> TFRecord files `<prefix>-SSSSS-of-NNNNN<suffix>`, as
    `beam.io.WriteToTFRecord` writes them (gzipped for a `.gz` suffix; one empty shard for
    no record); the files' paths.

    The files are staged by the steps that make the chunks, one per bundle, and published
    by one step (see `inference.io.publish`), not by Beam's `iobase.Write`, which adds
    four stages of its own to every file set (initialize, group, pre-finalize, finalize):
    most of a small run's fixed cost. The guarantee is the same: only the files of the
    bundles Beam committed are published; a retried bundle's file goes with the staging
    folder. The staging folder is named when the pipeline is built, so one Dataflow
    classic template must not run twice at once into the same prefix (a flex template
    builds its pipeline at each launch).
    """

    def __init__(self, file_prefix: str, file_name_suffix: str = publish.SUFFIX):
        super().__init__()
        self._prefix = file_prefix
        self._suffix = file_name_suffix

    def expand(self, chunks):
        staging = publish.staging_folder(self._prefix)
        return (chunks
                | "Stage" >> StageRecordChunks(staging, self._suffix)
                | "Publish" >> publish.PublishShards(self._prefix, staging, self._suffix))
