"""Several sinks' staged files published as one numbered file set."""
import os

import tensorflow as tf

from inference.io import publish
from tests import helpers


def _stage(staging, contents):
    """Gzipped TFRecord files in `staging`, one per split, holding `contents`' records."""
    staged = []
    for split, records in contents.items():
        staged.append(staging / split / "prediction_logs-00000-of-00001.gz")
        helpers.write_tfrecords(str(staged[-1]), records)
    return staged


def _records(paths):
    return [r.numpy() for r in tf.data.TFRecordDataset(paths, "GZIP")]


def test_files_are_numbered_in_staging_order_and_empty_ones_dropped(tmp_path):
    staging = tmp_path / "beam-temp-staging-1"
    staged = _stage(staging, {"eval": [b"e1", b"e2"], "test": [], "train": [b"t1"]})
    published = publish.publish_shards([str(p) for p in reversed(staged)],
                                       str(tmp_path / "prediction_logs"), str(staging))
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(p) for p in published] == [
        "prediction_logs-00000-of-00002.gz", "prediction_logs-00001-of-00002.gz"]
    assert _records(published) == [b"e1", b"e2", b"t1"]


def test_shards_of_an_earlier_run_under_the_prefix_are_deleted(tmp_path):
    for shard in range(3):  # more shards than this run publishes
        helpers.write_tfrecords(str(tmp_path / f"logs-{shard:05d}-of-00003.gz"), [b"old"])
    staging = tmp_path / "beam-temp-staging-1"
    staged = _stage(staging, {"eval": [b"e1"], "train": [b"t1"]})
    published = publish.publish_shards([str(p) for p in staged], str(tmp_path / "logs"),
                                       str(staging))
    assert sorted(os.listdir(tmp_path)) == ["logs-00000-of-00002.gz", "logs-00001-of-00002.gz"]
    assert _records(published) == [b"e1", b"t1"]


def test_all_empty_or_nothing_staged_gives_one_empty_shard(tmp_path):
    for name, contents in (("empty", {"eval": [], "train": []}), ("none", {})):
        staging = tmp_path / name / "beam-temp-staging-1"
        staged = _stage(staging, contents)
        published = publish.publish_shards([str(p) for p in staged],
                                           str(tmp_path / name / "logs"), str(staging))
        assert os.listdir(tmp_path / name) == ["logs-00000-of-00001.gz"]
        assert _records(published) == []


def test_publishing_again_after_a_partial_attempt_gives_the_same_files(tmp_path):
    staging = tmp_path / "beam-temp-staging-1"
    staged = _stage(staging, {"eval": [b"e1", b"e2"], "test": [], "train": [b"t1"]})
    prefix = str(tmp_path / "prediction_logs")
    first = str(tmp_path / "prediction_logs-00000-of-00002.gz")
    os.rename(staged[0], first)  # an attempt that renamed one file, then died

    published = publish.publish_shards([str(p) for p in staged], prefix, str(staging))

    assert published == [first, str(tmp_path / "prediction_logs-00001-of-00002.gz")]
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(p) for p in published]
    assert _records(published) == [b"e1", b"e2", b"t1"]
