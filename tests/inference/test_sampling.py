"""The pipeline's bounded sample of predictions: exactly the records whose input hashes
lowest, whatever the bundles; the same records for every model; readable back."""
import apache_beam as beam
import google_crc32c
import numpy as np

from inference.data.results import ChunkResult, FilePosition
from inference.io import sampling, tfrecord


def _results(model, records, offset=0.0):
    chunks = [records[i:i + 7] for i in range(0, len(records), 7)]
    return [ChunkResult(model, FilePosition("f", i * 7), chunk,
                        {"score": np.arange(len(chunk), dtype=np.float32)[:, None] + offset,
                         "label": np.array([b"x"] * len(chunk), dtype=object)}, [])
            for i, chunk in enumerate(chunks)]


def test_the_sample_is_the_bottom_k_by_input_hash_and_the_same_for_every_model(tmp_path):
    records = [b"record %d" % i for i in range(300)]
    with beam.Pipeline() as pipeline:
        for model, offset in (("a", 0.0), ("b", 10.0)):
            by_split = {split: pipeline | f"{model}{split}" >> beam.Create(
                _results(model, part, offset))
                for split, part in (("train", records[:200]), ("eval", records[200:]))}
            _ = by_split | f"Sample[{model}]" >> sampling.SamplePredictions(
                str(tmp_path / f"{model}.tfrecord"), size=25)
    expected = sorted(records, key=google_crc32c.value)[:25]
    samples = {m: sampling.read_samples(str(tmp_path / f"{m}.tfrecord")) for m in "ab"}
    for model in "ab":
        assert sorted(s.record for s in samples[model]) == sorted(expected)
        assert all(s.hash == google_crc32c.value(s.record) for s in samples[model])
        assert {s.split for s in samples[model]} <= {"train", "eval"}
    first = {s.record: s for s in samples["a"]}
    for sample in samples["b"]:  # the same record, each model's own outputs
        assert sample.outputs["score"][0] == first[sample.record].outputs["score"][0] + 10
        assert sample.outputs["label"].tolist() == [b"x"]


def test_no_sample_file_reads_as_no_sample(tmp_path):
    assert sampling.read_samples(str(tmp_path / "missing.tfrecord")) == []


def test_a_written_sample_reads_back_row_for_row(tmp_path):
    """Outputs of any width and type come back per sample; bytes keep trailing NULs (a
    serialized PredictionLog may end in one)."""
    kept = sampling.SampleSet(
        np.array([5, 9, 2]), ["train", "eval", "train"], [b"r0", b"r1", b"r2"],
        {"scores": np.arange(6, dtype=np.float32).reshape(3, 2),
         "log": np.array([b"a\x00", b"", b"\x00\x00"], dtype=object),
         "ids": np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])})
    path = sampling.write_samples(kept, str(tmp_path / "sample.tfrecord"))
    samples = sampling.read_samples(path)
    assert [(s.hash, s.split, s.record) for s in samples] == [
        (5, "train", b"r0"), (9, "eval", b"r1"), (2, "train", b"r2")]
    assert [s.outputs["scores"].tolist() for s in samples] == [[0, 1], [2, 3], [4, 5]]
    assert [s.outputs["log"].tolist() for s in samples] == [[b"a\x00"], [b""], [b"\x00\x00"]]
    assert [s.outputs["ids"].tolist() for s in samples] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_a_large_sample_is_written_in_parts_that_read_back_as_one(tmp_path):
    """A protobuf message cannot pass 2 GB: samples of large records (photos) go into
    several Examples, each of about `part_bytes` at most, read back in order."""
    records = [bytes([i]) * 300 for i in range(10)]
    kept = sampling.SampleSet(np.arange(10), ["eval"] * 10, records,
                              {"score": np.arange(10, dtype=np.float32)[:, None]})
    path = sampling.write_samples(kept, str(tmp_path / "sample.tfrecord"), part_bytes=1000)
    with open(path, "rb") as f:
        parts = [record for chunk in tfrecord.read_records(f) for record in chunk]
    assert len(parts) == 4  # 3 records of 304 bytes fit in 1,000
    samples = sampling.read_samples(path)
    assert [s.record for s in samples] == records
    assert [s.outputs["score"].tolist() for s in samples] == [[float(i)] for i in range(10)]
