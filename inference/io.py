"""Sources and sinks of the engine, reading and writing chunks of records.

`ReadRecords` reads TFRecord files tolerantly (see `inference.tfrecord`): a damaged file
ends as a dead letter (stage "read") naming the file, what was read and what was lost,
instead of killing the run; compression is found from each file's content. It yields
chunks `(origin, records)`, the origin being the file and the index of the chunk's first
record, and `WriteRecordChunks` writes chunks back as TFRecords, so no stage in between
pays Beam's per-element cost per record. `ReadImages` turns image files into tf.Examples
(the image's bytes and the file's path), one chunk per file.
"""
import logging
from typing import Iterator, List, Sequence

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import fileio, filebasedsink, iobase
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from inference import examples, metrics, progress, publish, tfrecord
from inference.batching import CHUNK_RECORDS, records_per_chunk
from inference.failures import FAILURES_TAG, Failure
from inference.transforms import CountFailures


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
        return (path, start), records


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


# --- Image files ----------------------------------------------------------------------------

IMAGE_FEATURE, FILE_FEATURE = "image", "file"
MAX_IMAGE_FILE_BYTES = 64 << 20


def image_example(path: str, data: bytes, image_feature: str = IMAGE_FEATURE,
                  file_feature: str = FILE_FEATURE) -> bytes:
    """A serialized tf.Example of an image file: its bytes, undecoded, and its path (the
    key that travels to the outputs)."""
    return examples.serialize({image_feature: [data], file_feature: [path]})


class _ReadImageFile(beam.DoFn):

    def __init__(self, split: str, image_feature: str, file_feature: str, max_bytes: int):
        self._split = split
        self._features = (image_feature, file_feature)
        self._max_bytes = max_bytes

    def setup(self):
        self._read = metrics.counter(metrics.EXAMPLES_IN, self._split)
        self._bytes = metrics.counter(metrics.BYTES_READ, self._split)

    def process(self, file):  # a FileMetadata of MatchAll
        path = file.path
        try:
            if file.size_in_bytes > self._max_bytes:
                raise ValueError(f"{file.size_in_bytes} bytes, more than max_file_bytes="
                                 f"{self._max_bytes} (raise it for bigger images)")
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                data = f.read()
        except Exception as e:  # pylint: disable=broad-except  (any filesystem's error)
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                "read", e, split=self._split, source=path))
            return
        self._read.inc()
        self._bytes.inc(len(data))
        yield (path, -1), [image_example(path, data, *self._features)]


class ReadImages(beam.PTransform):
    """File patterns of images (JPEG, PNG, ...; local, gs://, any Beam filesystem) -> one
    chunk `((file, -1), [example])` per file (`main`), and read failures (`failures`).

    Each example holds the file's bytes, undecoded, as `image_feature` and its path as
    `file_feature`, so the path travels with the prediction (PredictionLogs keep the
    example; rows select features). Images are decoded by the model's input mapping
    (`InputSpec.image`), where a file that is not an image becomes a dead letter naming
    it. A file that cannot be read, or is bigger than `max_file_bytes`, is a dead letter
    at stage "read". Files are counted as examples in of `split`.
    """

    def __init__(self, file_patterns: Sequence[str], split: str = "",
                 image_feature: str = IMAGE_FEATURE, file_feature: str = FILE_FEATURE,
                 max_file_bytes: int = MAX_IMAGE_FILE_BYTES):
        super().__init__()
        self._patterns = list(file_patterns)
        self._read = _ReadImageFile(split, image_feature, file_feature, max_file_bytes)

    def expand(self, pbegin):
        return _matched_files(pbegin, self._patterns) | "Read" >> beam.ParDo(
            self._read).with_outputs(FAILURES_TAG, main="main")
