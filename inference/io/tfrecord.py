"""The TFRecord codec: framing and CRCs, compression detected from content, gzip writing.

Every reader and writer of the engine goes through this module (records, predictions,
output examples, dead letters). It is written here, not taken from TensorFlow, so that
workers running other frameworks never import TensorFlow (seconds and hundreds of MB per
Beam worker process); Beam's own TFRecord source reads one record per call, decides
compression from the file name only, and fails the run on a damaged file.

Framing: length (uint64, little-endian), masked crc32c of the length, the data, masked
crc32c of the data.
"""
import collections
import gzip
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterator, List, Sequence

import google_crc32c

GZIP_LEVEL = 1  # outputs: about 3x faster than zlib's default (6), files about 10% larger
BLOCK = 1 << 20  # bytes read (and inflated) at a time
PENDING_WRITES = 2  # a GzipWriter's writes in flight (compressing or queued), at most

_GZIP_MAGIC = b"\x1f\x8b"
_HEADS = {}  # record size -> its 12 framing bytes
_HEAD_CRCS = {}  # record size -> masked crc of its length


class DamagedFile(ValueError):
    """A file that cannot be read on: not a TFRecord file, a bad checksum, a cut-off
    record or stream.

    consumed: where the damage was found: the offset of the damaged record in an
      uncompressed file, the compressed bytes read so far in a compressed one.
    """

    def __init__(self, message: str, consumed: int = 0):
        super().__init__(message)
        self.consumed = consumed


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


def _head_crc(size: int) -> int:
    crc = _HEAD_CRCS.get(size)
    if crc is None:
        crc = masked_crc(struct.pack("<Q", size))
        if len(_HEAD_CRCS) < 65536:
            _HEAD_CRCS[size] = crc
    return crc


def _head(size: int) -> bytes:
    head = _HEADS.get(size)
    if head is None:  # a file's records have few distinct sizes
        head = struct.pack("<QI", size, _head_crc(size))
        if len(_HEADS) < 65536:
            _HEADS[size] = head
    return head


def frame(records: Sequence[bytes]) -> bytes:
    """The records in TFRecord framing, as one string."""
    parts, crc32c, pack, heads = [], google_crc32c.value, struct.pack, _HEADS
    for record in records:
        head = heads.get(len(record)) or _head(len(record))
        crc = crc32c(record)  # masked inline: a call per record costs more than the crc
        parts += (head, record,
                  pack("<I", (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff))
    return b"".join(parts)


class GzipWriter:
    """A gzip stream at GZIP_LEVEL over an open file; closes both. No file name or time in
    the header: the same records give the same bytes.

    The writer compresses and writes on a thread of its own: zlib releases the GIL while
    it deflates, so the caller frames its next batch meanwhile. At most PENDING_WRITES
    writes are in flight, which bounds the memory held. An error of a write is raised by a
    later write or by close, which closes the file whatever happened.
    """

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._gzip = gzip.GzipFile(filename="", fileobj=raw, mode="wb",
                                   compresslevel=GZIP_LEVEL, mtime=0)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gzip")
        self._pending = collections.deque()

    def write(self, data: bytes):
        if len(self._pending) >= PENDING_WRITES:
            self._pending.popleft().result()
        self._pending.append(self._thread.submit(self._gzip.write, data))

    def close(self):
        try:
            while self._pending:
                self._pending.popleft().result()
            self._gzip.close()
        finally:
            self._thread.shutdown(cancel_futures=True)
            self._raw.close()


def compression(head: bytes) -> str:
    """"gzip", "zlib" or "none" for a file starting with `head` (its first 12 bytes or
    fewer), from the content alone: a file's name may say otherwise."""
    if len(head) >= 12:
        size, size_crc = struct.unpack("<QI", head[:12])
        if size_crc == _head_crc(size):
            return "none"
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    raise DamagedFile(f"not a TFRecord file: it starts with {head[:12].hex(' ')}, neither "
                      f"a TFRecord length with its checksum nor a gzip or zlib header "
                      f"(is it another format, or encrypted?)")


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "zlib": zlib.MAX_WBITS}


def read_records(raw: BinaryIO) -> Iterator[List[bytes]]:
    """The records of an open TFRecord file (compression found from its content), in
    lists (those found in each block read), each length and record checked against its
    crc32c as TensorFlow's reader checks them.

    Raises DamagedFile where the file is damaged, after yielding every record before it.
    """
    counter = _Counted(raw)
    head = counter.read(12)
    if not head:
        return
    kind = compression(head)
    blocks = _prepend(head, iter(lambda: counter.read(BLOCK), b""))
    try:
        yield from _unframe(blocks if kind == "none" else _inflate(blocks, _WBITS[kind]))
    except zlib.error as e:
        raise DamagedFile(f"the {kind} stream is corrupt ({e})", counter.consumed) from e
    except DamagedFile as e:
        if kind != "none":  # the offset in the decompressed stream: say where in the file
            raise DamagedFile(str(e), counter.consumed) from e
        raise


class _Counted:
    """A file's reads, counting the bytes read."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.consumed = 0

    def read(self, size: int) -> bytes:
        data = self._raw.read(size)
        self.consumed += len(data)
        return data


def _prepend(first: bytes, blocks: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from blocks


def _inflate(blocks: Iterator[bytes], wbits: int) -> Iterator[bytes]:
    """Decompressed blocks of a (possibly multi-member) gzip or zlib stream."""
    inflater = zlib.decompressobj(wbits)
    for block in blocks:
        while block:
            if inflater.eof:  # the next member
                inflater = zlib.decompressobj(wbits)
            yield inflater.decompress(block)
            block = inflater.unused_data
    if not inflater.eof:
        raise DamagedFile("the compressed stream ends early (a cut-off file?)")


def _unframe(blocks: Iterator[bytes]) -> Iterator[List[bytes]]:
    """Lists of records out of TFRecord framing spread over `blocks`. Raises DamagedFile
    with the stream offset of the damaged record."""
    buffer, pos, need, pending, pending_size, done = b"", 0, 12, [], 0, 0
    crc32c, unpack, heads = google_crc32c.value, struct.unpack_from, _HEAD_CRCS
    for block in blocks:
        pending.append(block)
        pending_size += len(block)
        if len(buffer) - pos + pending_size < need:
            continue  # a record larger than a block: join once it is all here
        done += pos
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
                                  f"of a block", done + pos)
            if end - pos < size + 16:
                need = size + 16
                break
            start = pos + 12
            pos = start + size + 4
            record = buffer[start:pos - 4]
            crc = crc32c(record)  # masked inline, as in `frame`
            if unpack("<I", buffer, pos - 4)[0] != (
                    ((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff:
                yield records
                raise DamagedFile(f"corrupt record data ({size} bytes)", done + start - 12)
            records.append(record)
        yield records
    if len(buffer) - pos + pending_size:
        raise DamagedFile("the file ends inside a record (a cut-off file?)", done + pos)
