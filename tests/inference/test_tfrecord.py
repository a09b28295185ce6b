"""The TFRecord codec reads what TensorFlow writes (compression found from the content, not
the name), writes what TensorFlow reads, and stops with a clear error where a file is
damaged, after every record before the damage."""
import gzip
import io
import os
import zlib

import pytest
import tensorflow as tf

from inference.io import tfrecord

# Sizes around the framing's and a block's edges, one record larger than a block.
RECORDS = [b"", b"x", b"y" * 11, b"z" * 12, b"w" * 300, os.urandom(3 * 1024 * 1024)] + [
    bytes([i % 256]) * (i % 50) for i in range(500)]


def _write(path, records, compression=""):
    with tf.io.TFRecordWriter(str(path), options=compression or None) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _read(path):
    with open(path, "rb") as f:
        return [record for records in tfrecord.read_records(f) for record in records]


@pytest.mark.parametrize("compression", ["", "GZIP", "ZLIB"])
@pytest.mark.parametrize("block", [5, 1 << 20])
@pytest.mark.parametrize("name", ["data", "data.gz", "data.zlib"])
def test_reads_what_tensorflow_writes_whatever_the_file_is_called(tmp_path, monkeypatch,
                                                                  compression, block, name):
    monkeypatch.setattr(tfrecord, "BLOCK", block)  # 5 bytes: every record crosses blocks
    assert _read(_write(tmp_path / name, RECORDS, compression)) == RECORDS


def test_writes_what_tensorflow_reads(tmp_path):
    path = tmp_path / "out.gz"
    with open(path, "wb") as raw:
        writer = tfrecord.GzipWriter(raw)
        writer.write(tfrecord.frame(RECORDS[:50]))
        writer.close()
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
    assert read == RECORDS[:50]
    assert tfrecord.frame(RECORDS[:50]) == open(_write(tmp_path / "tf", RECORDS[:50]),
                                                "rb").read()


def test_a_gzip_writer_writes_its_chunks_in_order_as_one_gzip_stream(tmp_path):
    chunks = [tfrecord.frame(RECORDS[i:i + 7]) for i in range(0, len(RECORDS), 7)]
    path = tmp_path / "out.gz"
    writer = tfrecord.GzipWriter(open(path, "wb"))
    for chunk in chunks:
        writer.write(chunk)
    writer.close()
    assert path.read_bytes() == gzip.compress(b"".join(chunks), tfrecord.GZIP_LEVEL, mtime=0)
    assert _read(path) == RECORDS


class _FullDisk(io.BytesIO):
    """A file that takes the gzip header (10 bytes), then fails."""

    def write(self, data):
        if self.tell() + len(data) > 10:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_a_failed_write_is_raised_by_the_writer_which_closes_the_file():
    raw = _FullDisk()
    writer = tfrecord.GzipWriter(raw)
    writer.write(tfrecord.frame(RECORDS))  # in flight: its error comes with close
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert raw.closed


def test_compression_comes_from_the_content():
    framed = tfrecord.frame([b"abc"])
    assert tfrecord.compression(framed[:12]) == "none"
    assert tfrecord.compression(gzip.compress(framed)[:12]) == "gzip"
    assert tfrecord.compression(zlib.compress(framed)[:12]) == "zlib"
    with pytest.raises(tfrecord.DamagedFile, match="not a TFRecord file: it starts with 50 41"):
        tfrecord.compression(b"PAR1 parquet")


def test_empty_files_have_no_records(tmp_path):
    assert _read(_write(tmp_path / "empty.gz", [], "GZIP")) == []
    (tmp_path / "zero.gz").write_bytes(b"")
    assert _read(str(tmp_path / "zero.gz")) == []


def test_concatenated_gzip_members_are_read_on(tmp_path):
    first = open(_write(tmp_path / "a", RECORDS[:5]), "rb").read()
    second = open(_write(tmp_path / "b", RECORDS[5:]), "rb").read()
    (tmp_path / "both.gz").write_bytes(gzip.compress(first) + gzip.compress(second))
    assert _read(str(tmp_path / "both.gz")) == RECORDS


def _damaged(data: bytes):
    read = []
    with pytest.raises(tfrecord.DamagedFile) as raised:
        for records in tfrecord.read_records(io.BytesIO(data)):
            read += records
    return read, raised.value


def _offset(index):
    return sum(16 + len(r) for r in RECORDS[:index])


def _good(tmp_path) -> bytearray:
    return bytearray(open(_write(tmp_path / "good", RECORDS[:50]), "rb").read())


def test_a_corrupt_record_stops_the_file_after_the_records_before_it(tmp_path):
    data = _good(tmp_path)
    data[_offset(7) + 12 + 3] ^= 0xFF  # the 4th byte of record 7's data
    read, error = _damaged(bytes(data))
    assert read == RECORDS[:7] and "corrupt record data" in str(error)
    assert 0 < error.consumed <= len(data)


def test_a_corrupt_length_stops_the_file(tmp_path):
    data = _good(tmp_path)
    data[_offset(9) + 2] = 0x7F  # record 9's length becomes ~8 MB
    read, error = _damaged(bytes(data))
    assert read == RECORDS[:9] and "corrupt record length" in str(error)


def test_a_cut_off_file_is_damaged_after_its_last_whole_record(tmp_path):
    data = _good(tmp_path)
    read, error = _damaged(bytes(data[:_offset(20) + 5]))
    assert read == RECORDS[:20] and "ends inside a record" in str(error)
    read, error = _damaged(gzip.compress(bytes(data))[:-4])
    assert read == RECORDS[:50] and "ends early" in str(error)


def test_a_file_that_is_not_tfrecords_is_damaged_from_its_start():
    read, error = _damaged(b"fare,trip_miles\n12.5,3.1\n")
    assert read == [] and "not a TFRecord file" in str(error)
