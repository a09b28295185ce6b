"""The TFRecord reader reads what TensorFlow writes, and stops with a clear error where a
file is damaged, after every record before the damage."""
import gzip
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from inference import io

# Sizes around the framing's and a block's edges, one record larger than a block.
RECORDS = [b"", b"x", b"y" * 11, b"z" * 12, b"w" * 300, os.urandom(3 * 1024 * 1024)] + [
    bytes([i % 256]) * (i % 50) for i in range(500)]


def _write(path, records, compression=""):
    with tf.io.TFRecordWriter(str(path), options=compression or None) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _read(path):
    return [record for records in io.read_tfrecords(path) for record in records]


@pytest.mark.parametrize("suffix, compression", [("", ""), (".gz", "GZIP"),
                                                 (".zlib", "ZLIB")])
@pytest.mark.parametrize("block", [5, 1 << 20])
def test_reads_what_tensorflow_writes(tmp_path, monkeypatch, suffix, compression, block):
    monkeypatch.setattr(io, "_BLOCK", block)  # 5 bytes: every record crosses blocks
    path = _write(tmp_path / f"data{suffix}", RECORDS, compression)
    assert _read(path) == RECORDS


def test_empty_files_have_no_records(tmp_path):
    assert _read(_write(tmp_path / "empty.gz", [], "GZIP")) == []
    (tmp_path / "zero.gz").write_bytes(b"")
    assert _read(str(tmp_path / "zero.gz")) == []


def test_concatenated_gzip_members_are_read_on(tmp_path):
    first = open(_write(tmp_path / "a", RECORDS[:5]), "rb").read()
    second = open(_write(tmp_path / "b", RECORDS[5:]), "rb").read()
    (tmp_path / "both.gz").write_bytes(gzip.compress(first) + gzip.compress(second))
    assert _read(str(tmp_path / "both.gz")) == RECORDS


def _damaged(tmp_path, edit, name="data"):
    data = bytearray(open(_write(tmp_path / "good", RECORDS[:50]), "rb").read())
    path = tmp_path / name
    path.write_bytes(edit(data))
    read = []
    with pytest.raises(io.DamagedFile) as raised:
        for records in io.read_tfrecords(str(path)):
            read += records
    return read, str(raised.value)


def _offset(index):
    return sum(16 + len(r) for r in RECORDS[:index])


def test_a_corrupt_record_stops_the_file_after_the_records_before_it(tmp_path):
    def flip(data):
        data[_offset(7) + 12 + 3] ^= 0xFF  # the 4th byte of record 7's data
        return bytes(data)
    read, message = _damaged(tmp_path, flip)
    assert read == RECORDS[:7] and "corrupt record data" in message


def test_a_corrupt_length_stops_the_file(tmp_path):
    def grow(data):
        data[_offset(9) + 2] = 0x7F  # record 9's length becomes ~8 MB
        return bytes(data)
    read, message = _damaged(tmp_path, grow)
    assert read == RECORDS[:9] and "corrupt record length" in message


def test_a_cut_off_file_is_damaged_after_its_last_whole_record(tmp_path):
    read, message = _damaged(tmp_path, lambda data: bytes(data[:_offset(20) + 5]))
    assert read == RECORDS[:20] and "ends inside a record" in message
    read, message = _damaged(tmp_path, lambda data: gzip.compress(bytes(data))[:-4],
                             "cut.gz")
    assert read == RECORDS[:50] and "ends early" in message


def test_workers_of_other_frameworks_do_not_import_tensorflow():
    """What a Beam worker imports to run a PyTorch, scikit-learn or ONNX model: TensorFlow
    would add seconds and hundreds of MB to every worker process."""
    code = ("import sys; import inference.transforms, inference.io, inference.handler, "
            "inference.frameworks.pytorch, inference.frameworks.sklearn, "
            "inference.frameworks.onnx; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    assert out.stdout.strip().splitlines()[-1] == "False"
