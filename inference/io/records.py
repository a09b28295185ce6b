"""TFRecord files in and out, in chunks of records.

`ReadRecords` reads TFRecord files tolerantly (see `inference.io.tfrecord`): a damaged file
ends as a dead letter (stage "read") naming the file, what was read and what was lost,
instead of killing the run; compression is found from each file's content. It yields
chunks `(origin, records)`, the origin a `FilePosition` (the file and the index of the
chunk's first record), and `WriteRecordChunks` writes chunks back as TFRecords, so no stage
in between pays Beam's per-element cost per record.
"""
import logging
from typing import List, Sequence

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import filebasedsink, fileio, iobase
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

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


class _TFRecordChunkSink(filebasedsink.FileBasedSink):
    """Beam's file sink, writing a chunk of records per element in TFRecord framing
    (`.gz` files gzipped at tfrecord.GZIP_LEVEL), the chunk framed in one call.

    A run writes its prefix as if new: files of an earlier run under the same prefix
    (`<prefix>-?????-of-?????<suffix>`, whatever their count) are deleted when this run's
    files are finalized, so a glob never counts both.
    """

    def __init__(self, file_path_prefix: str, file_name_suffix: str):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(),
                         file_name_suffix=file_name_suffix,
                         mime_type="application/octet-stream",
                         compression_type=CompressionTypes.UNCOMPRESSED)
        self._gzip = file_name_suffix.endswith(".gz")
        self._earlier = (file_path_prefix, file_name_suffix)

    def open(self, temp_path):
        raw = super().open(temp_path)
        return tfrecord.GzipWriter(raw) if self._gzip else raw

    def close(self, file_handle):
        file_handle.close()

    def write_record(self, file_handle, value: Sequence[bytes]):
        file_handle.write(tfrecord.frame(value))

    def pre_finalize(self, init_result, writer_results):
        publish.delete_earlier_shards(*self._earlier)
        return super().pre_finalize(init_result, writer_results)


class WriteRecordChunks(beam.PTransform):
    """Chunks of serialized records -> TFRecord files `<prefix>-SSSSS-of-NNNNN<suffix>`, as
    `beam.io.WriteToTFRecord` writes them (gzipped for a `.gz` suffix)."""

    def __init__(self, file_prefix: str, file_name_suffix: str = ".gz"):
        super().__init__()
        self._prefix = file_prefix
        self._suffix = file_name_suffix

    def expand(self, chunks):
        return chunks | iobase.Write(_TFRecordChunkSink(self._prefix, self._suffix))
