"""Sources and sinks of the engine, reading and writing chunks of records.

`ReadRecords` reads TFRecord files tolerantly: Beam's TFRecord source fails the whole run on
the first truncated or corrupt file, so each file is read here (`read_tfrecords`) and a
damaged file ends as a dead letter (stage "read", with the file and the number of records
read before the damage) instead of killing the run. It yields chunks (lists of
records, see `inference.handler`), and `WriteRecordChunks` writes them back as TFRecords,
so no stage in between pays Beam's per-element cost per record.
"""
import gzip
import struct
import zlib
from typing import Iterator, List, Sequence

import apache_beam as beam
import google_crc32c
from apache_beam import coders
from apache_beam.io import fileio, filebasedsink, iobase
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from inference.failures import FAILURES_TAG, Failure
from inference.handler import DEFAULT_MIN_BATCH_SIZE
from inference.metrics import COUNTERS_NAMESPACE, examples_counter, failures_counter

_COMPRESSION = {".gz": 16 + zlib.MAX_WBITS, ".gzip": 16 + zlib.MAX_WBITS,
                ".zlib": zlib.MAX_WBITS}  # file suffix -> zlib's wbits for the stream
_BLOCK = 1 << 20  # bytes read (and inflated) at a time


# TFRecord framing: length (uint64), masked crc32c of the length, data, masked crc32c of
# the data (what Beam's _TFRecordUtil.write_record writes, without its per-call lookups).
_HEADS = {}  # record size -> length and its masked crc
_HEAD_CRCS = {}  # record size -> masked crc of its length


def _head(size: int) -> bytes:
    """The 12 bytes framing a record of `size` bytes ahead of its data."""
    head = _HEADS.get(size)
    if head is None:  # a split's records have few distinct sizes
        head = struct.pack("<QI", size, _head_crc(size))
        if len(_HEADS) < 65536:
            _HEADS[size] = head
    return head


def _head_crc(size: int) -> int:
    crc = _HEAD_CRCS.get(size)
    if crc is None:
        crc = _masked(google_crc32c.value(struct.pack("<Q", size)))
        if len(_HEAD_CRCS) < 65536:
            _HEAD_CRCS[size] = crc
    return crc


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


class DamagedFile(ValueError):
    """A TFRecord file that cannot be read on: a bad checksum, a cut-off record or stream."""


def read_tfrecords(path: str) -> Iterator[List[bytes]]:
    """The records of a TFRecord file, gzip- or zlib-compressed by its suffix, in lists
    (those found in each block read), each length and record checked against its crc32c
    as TensorFlow's reader checks them.

    Written here, not taken from TensorFlow's reader, so that workers running other
    frameworks never import TensorFlow (seconds and hundreds of MB per Beam worker
    process); Beam's own TFRecord source reads a record per call and fails the run on a
    damaged file. Raises DamagedFile (or zlib's error) where the file is damaged, after
    yielding every record before it.
    """
    wbits = next((w for suffix, w in _COMPRESSION.items() if path.endswith(suffix)), None)
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        blocks = iter(lambda: raw.read(_BLOCK), b"")
        yield from _unframe(blocks if wbits is None else _inflate(blocks, wbits))


def _inflate(blocks: Iterator[bytes], wbits: int) -> Iterator[bytes]:
    """Decompressed blocks of a (possibly multi-member) gzip or zlib stream."""
    inflater, started = zlib.decompressobj(wbits), False
    for block in blocks:
        started = True
        while block:
            if inflater.eof:  # the next member
                inflater = zlib.decompressobj(wbits)
            yield inflater.decompress(block)
            block = inflater.unused_data
    if started and not inflater.eof:
        raise DamagedFile("the compressed stream ends early")


def _unframe(blocks: Iterator[bytes]) -> Iterator[List[bytes]]:
    """Lists of records out of TFRecord framing (see `_head`) spread over `blocks`."""
    buffer, pos, need, pending, pending_size = b"", 0, 12, [], 0
    crc32c, unpack, heads = google_crc32c.value, struct.unpack_from, _HEAD_CRCS
    for block in blocks:
        pending.append(block)
        pending_size += len(block)
        if len(buffer) - pos + pending_size < need:
            continue  # a record larger than a block: join once it is all here
        buffer = b"".join([buffer[pos:]] + pending)
        pos, pending, pending_size, end = 0, [], 0, len(buffer)
        records = []
        while True:
            if end - pos < 12:
                need = 12
                break
            size, size_crc = unpack("<QI", buffer, pos)
            if size_crc != (heads.get(size) or _head_crc(size)):
                yield records
                raise DamagedFile(f"corrupt record length after {len(records)} record(s) "
                                  f"of a block")
            if end - pos < size + 16:
                need = size + 16
                break
            start = pos + 12
            pos = start + size + 4
            record = buffer[start:pos - 4]
            crc = crc32c(record)  # _masked, inline: a call per record costs more than crc
            if unpack("<I", buffer, pos - 4)[0] != (
                    ((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff:
                yield records
                raise DamagedFile(f"corrupt record data ({size} bytes)")
            records.append(record)
        yield records
    if len(buffer) - pos + pending_size:
        raise DamagedFile("the file ends inside a record")


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
        chunk, count, size = [], 0, self._chunk_size
        try:
            for records in read_tfrecords(path):
                chunk += records
                whole = len(chunk) - len(chunk) % size
                for start in range(0, whole, size):
                    yield from self._emit(chunk[start:start + size])
                count += whole
                chunk = chunk[whole:]
        except Exception as e:  # pylint: disable=broad-except
            # A damaged file: what was read before the damage goes on, the rest is a failure.
            self._failures.inc()
            yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                "read", e, split=self._split,
                source=f"{path}: unreadable after {count + len(chunk)} record(s)"))
        if chunk:
            yield from self._emit(chunk)

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
        parts, crc32c, pack, heads = [], google_crc32c.value, struct.pack, _HEADS
        for record in value:
            head = heads.get(len(record)) or _head(len(record))
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
