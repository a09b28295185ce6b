"""Sources and sinks of the engine, reading and writing chunks of records.

`ReadRecords` reads TFRecord files tolerantly: Beam's TFRecord source fails the whole run on
the first truncated or corrupt file, so each file is read here with TensorFlow's C++ record
reader and a damaged file ends as a dead letter (stage "read", with the file and the number
of records read before the damage) instead of killing the run. It yields chunks (lists of
records, see `inference.handler`), and `WriteRecordChunks` writes them back as TFRecords,
so no stage in between pays Beam's per-element cost per record.
"""
import gzip
import itertools
import struct
from typing import Sequence

import apache_beam as beam
import google_crc32c
from apache_beam import coders
import tensorflow as tf
from apache_beam.io import fileio, filebasedsink, iobase
from apache_beam.io.filesystem import CompressionTypes

from inference.failures import FAILURES_TAG, Failure
from inference.handler import DEFAULT_MIN_BATCH_SIZE
from inference.metrics import COUNTERS_NAMESPACE, examples_counter, failures_counter

_COMPRESSION = {".gz": "GZIP", ".gzip": "GZIP", ".zlib": "ZLIB"}


class _ReadTFRecordFile(beam.DoFn):

    def __init__(self, split: str, chunk_size: int):
        self._split = split
        self._chunk_size = chunk_size

    def setup(self):
        self._records = beam.metrics.Metrics.counter(COUNTERS_NAMESPACE,
                                                     examples_counter(self._split))
        self._failures = beam.metrics.Metrics.counter(
            COUNTERS_NAMESPACE, failures_counter("", self._split, "read"))

    def process(self, path: str):
        options = tf.io.TFRecordOptions(next(
            (c for suffix, c in _COMPRESSION.items() if path.endswith(suffix)), ""))
        count = 0
        try:
            records = tf.compat.v1.io.tf_record_iterator(path, options)
            while True:
                chunk = list(itertools.islice(records, self._chunk_size))
                if not chunk:
                    return
                count += len(chunk)
                yield from self._emit(chunk)
        except Exception:  # pylint: disable=broad-except
            pass
        # The file is damaged after `count` records: read on one by one up to the damage.
        chunk = []
        try:
            for record in itertools.islice(
                    tf.compat.v1.io.tf_record_iterator(path, options), count, None):
                chunk.append(record)
        except Exception as e:  # pylint: disable=broad-except
            self._failures.inc()
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                "read", e, split=self._split,
                source=f"{path}: unreadable after {count + len(chunk)} record(s)"))
        for start in range(0, len(chunk), self._chunk_size):
            yield from self._emit(chunk[start:start + self._chunk_size])

    def _emit(self, chunk):
        self._records.inc(len(chunk))
        yield chunk


class ReadRecords(beam.PTransform):
    """File patterns of TFRecord files -> chunks of serialized records (`main`, lists of
    at most `chunk_size`) and read failures.

    Records are counted as examples in of `split`.
    """

    def __init__(self, file_patterns: Sequence[str], split: str = "",
                 chunk_size: int = DEFAULT_MIN_BATCH_SIZE):
        super().__init__()
        self._patterns = list(file_patterns)
        self._split = split
        self._chunk_size = chunk_size

    def expand(self, pbegin):
        return (pbegin
                | "Patterns" >> beam.Create(self._patterns)
                | "Match" >> fileio.MatchAll()
                | "Paths" >> beam.Map(lambda metadata: metadata.path)
                | "Distribute" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadTFRecordFile(
                    self._split, self._chunk_size)).with_outputs(FAILURES_TAG, main="main"))


# gzip level for the outputs: 1 compresses about 3x faster than zlib's default (6, what
# Beam writes), for files about 10% larger; compression was the biggest cost of writing.
GZIP_LEVEL = 1


# TFRecord framing: length (uint64), masked crc32c of the length, data, masked crc32c of
# the data (what Beam's _TFRecordUtil.write_record writes, without its per-call lookups).
_HEADS = {}  # record size -> length and its masked crc


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


class _TFRecordChunkSink(filebasedsink.FileBasedSink):
    """Beam's TFRecord file sink, taking a chunk of records per element: the chunk is
    framed in memory and written (and compressed) in one call. `.gz` files are gzipped at
    GZIP_LEVEL."""

    def __init__(self, file_path_prefix: str, file_name_suffix: str):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(),
                         file_name_suffix=file_name_suffix,
                         mime_type="application/octet-stream",
                         compression_type=CompressionTypes.UNCOMPRESSED)
        self._gzip = file_name_suffix.endswith(".gz")

    def open(self, temp_path):
        raw = super().open(temp_path)
        if not self._gzip:
            return raw
        return _GzipWriter(raw)

    def close(self, file_handle):
        file_handle.close()

    def write_record(self, file_handle, value: Sequence[bytes]):
        parts, crc32c, pack = [], google_crc32c.value, struct.pack
        for record in value:
            size = len(record)
            head = _HEADS.get(size)
            if head is None:  # records of a model's logs have few distinct sizes
                length = pack("<Q", size)
                head = length + pack("<I", _masked(crc32c(length)))
                if len(_HEADS) < 65536:
                    _HEADS[size] = head
            crc = crc32c(record)  # _masked, inline: a call per record costs more than crc
            parts += (head, record,
                      pack("<I", (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff))
        file_handle.write(b"".join(parts))


class _GzipWriter:
    """A gzip stream at GZIP_LEVEL over a file Beam opened; closes both."""

    def __init__(self, raw):
        self._raw = raw
        # No file name or time in the header: the same records give the same bytes.
        self._gzip = gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                   compresslevel=GZIP_LEVEL, mtime=0)

    def write(self, data: bytes):
        self._gzip.write(data)

    def close(self):
        self._gzip.close()
        self._raw.close()


class WriteRecordChunks(beam.PTransform):
    """Chunks of serialized records -> TFRecord files `<prefix>-SSSSS-of-NNNNN<suffix>`,
    as `beam.io.WriteToTFRecord` writes them (gzipped for a `.gz` suffix)."""

    def __init__(self, file_prefix: str, file_name_suffix: str = ".gz"):
        super().__init__()
        self._prefix = file_prefix
        self._suffix = file_name_suffix

    def expand(self, chunks):
        return chunks | iobase.Write(_TFRecordChunkSink(self._prefix, self._suffix))


class WriteFailures(beam.PTransform):
    """Failures -> gzipped TFRecords of tf.train.Example dead letters at `<prefix>-*.gz`."""

    def __init__(self, file_prefix: str):
        super().__init__()
        self._prefix = file_prefix

    def expand(self, failures):
        return (failures
                | "ToExamples" >> beam.Map(Failure.to_example)
                | "Write" >> beam.io.WriteToTFRecord(self._prefix, file_name_suffix=".gz"))
