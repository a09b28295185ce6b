"""The pipeline's bounded sample of predictions: exactly the records whose input hashes
lowest, whatever the bundles; the same records for every model; readable back."""
import zlib

import apache_beam as beam
import numpy as np

from inference import sampling
from inference.results import ChunkResult


def _results(model, records, offset=0.0):
    chunks = [records[i:i + 7] for i in range(0, len(records), 7)]
    return [ChunkResult(model, ("f", i * 7), chunk,
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
    expected = sorted(records, key=zlib.crc32)[:25]
    samples = {m: sampling.read_samples(str(tmp_path / f"{m}.tfrecord")) for m in "ab"}
    for model in "ab":
        assert sorted(s.record for s in samples[model]) == sorted(expected)
        assert all(s.hash == zlib.crc32(s.record) for s in samples[model])
        assert {s.split for s in samples[model]} <= {"train", "eval"}
    first = {s.record: s for s in samples["a"]}
    for sample in samples["b"]:  # the same record, each model's own outputs
        assert sample.outputs["score"][0] == first[sample.record].outputs["score"][0] + 10
        assert sample.outputs["label"].tolist() == [b"x"]


def test_no_sample_file_reads_as_no_sample(tmp_path):
    assert sampling.read_samples(str(tmp_path / "missing.tfrecord")) == []
