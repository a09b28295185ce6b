"""Sources and sinks: chunks carry where their records came from, damaged and mislabelled
files lose nothing silently, a prefix is written as if new, dead letters round-trip."""
import os
import re
import subprocess
import sys

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from inference.data.failures import FAILURES_TAG, Failure
from inference.io import records as records_lib
from inference.io.dead_letters import WriteFailures, read_failures
from inference.io.records import ReadRecords, WriteRecordChunks, estimate_lost
from inference.observe import metrics
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _records(n, tag="r"):
    return [helpers.example({"x": [float(i)], "tag": [tag]}) for i in range(n)]


def _counters(result) -> dict:
    found = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    return {r.key.metric.name: r.committed for r in found["counters"]}


def test_chunks_know_their_file_and_first_record(tmp_path):
    path = str(tmp_path / "a.gz")
    helpers.write_tfrecords(path, _records(20))
    with beam.Pipeline() as pipeline:
        read = pipeline | ReadRecords([path], "eval", chunk_size=7)
        assert_that(read.main | beam.Map(lambda c: (c[0], len(c[1]))),
                    equal_to([((path, 0), 7), ((path, 7), 7), ((path, 14), 6)]))
        assert_that(read[FAILURES_TAG], equal_to([]), label="no failures")
    assert _counters(pipeline.result)[f"{metrics.EXAMPLES_IN}|eval"] == 20


def test_chunks_of_large_records_hold_about_4_mib(tmp_path):
    path = str(tmp_path / "big.gz")
    helpers.write_tfrecords(path, [helpers.example({"blob": [bytes(1 << 20)]})] * 10)
    with beam.Pipeline() as pipeline:
        read = pipeline | ReadRecords([path], "eval")
        assert_that(read.main | beam.Map(lambda c: (c[0][1], len(c[1]))),
                    equal_to([(0, 3), (3, 3), (6, 3), (9, 1)]))


def test_a_gzip_file_without_gz_in_its_name_is_read_whole(tmp_path):
    """Compression comes from the content: a mislabelled file loses nothing."""
    good, mislabelled = str(tmp_path / "good.gz"), str(tmp_path / "data-00001")
    helpers.write_tfrecords(good, _records(1000))
    helpers.write_tfrecords(mislabelled, _records(1000, "m"))  # gzipped, no .gz
    with beam.Pipeline() as pipeline:
        read = pipeline | ReadRecords([str(tmp_path / "*")], "eval", chunk_size=100)
        assert_that(read.main | beam.FlatMap(lambda c: c[1]) | beam.combiners.Count.Globally(),
                    equal_to([2000]))
    counters = _counters(pipeline.result)
    assert counters[f"{metrics.EXAMPLES_IN}|eval"] == 2000
    assert f"{metrics.UNREADABLE_FILES}|eval" not in counters


def test_a_file_damaged_part_way_keeps_its_records_and_estimates_its_loss(tmp_path):
    """A byte flipped a quarter into a file of 4,000 records: the 999 records before it go
    on, the rest count as lost by the bytes per record read (about 3,000), not as 1."""
    path = str(tmp_path / "data")
    records = [helpers.example({"id": [i], "blob": [bytes(1000)]}) for i in range(4000)]
    helpers.write_tfrecords(path, records, gzipped=False)
    data = bytearray(open(path, "rb").read())
    damage = sum(len(r) + 16 for r in records[:999])
    data[damage + 20] ^= 0xFF  # inside record 999
    open(path, "wb").write(bytes(data))
    with beam.Pipeline() as pipeline:
        out = pipeline | ReadRecords([path], "eval", chunk_size=100)
        assert_that(out[FAILURES_TAG] | beam.Map(
            lambda f: (f.stage, f.split, abs(f.lost - 3001) <= 30)),
            equal_to([("read", "eval", True)]))
    counters = _counters(pipeline.result)
    assert counters[f"{metrics.EXAMPLES_IN}|eval"] == 999
    assert counters[f"{metrics.DAMAGED_FILES}|eval"] == 1
    assert counters[f"{metrics.UNREAD_BYTES}|eval"] == len(data) - damage


def test_lost_records_are_estimated_from_the_bytes_per_record_read():
    assert estimate_lost(records_read=100, consumed=1000, size=3000) == 200
    assert estimate_lost(records_read=100, consumed=3000, size=3000) == 1  # the cut one
    assert estimate_lost(records_read=0, consumed=12, size=3000) == 0  # unknown


def test_a_file_that_is_not_tfrecords_is_unreadable_and_says_so(tmp_path):
    good, csv = str(tmp_path / "good.gz"), tmp_path / "data.csv"
    helpers.write_tfrecords(good, _records(10))
    csv.write_text("fare,trip_miles\n12.5,3.1\n")
    with beam.Pipeline() as pipeline:
        out = pipeline | ReadRecords([str(tmp_path / "*")], "eval")
        assert_that(out[FAILURES_TAG] | beam.Map(lambda f: (f.stage, f.lost, f.source)),
                    equal_to([("read", 0, f"{csv}: unreadable from its start (25 bytes)")]))
    counters = _counters(pipeline.result)
    assert counters[f"{metrics.UNREADABLE_FILES}|eval"] == 1
    assert counters[f"{metrics.UNREADABLE_BYTES}|eval"] == 25
    assert counters[f"{metrics.EXAMPLES_IN}|eval"] == 10


def _write(prefix, chunks):
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(chunks) | WriteRecordChunks(prefix)


def test_a_prefix_is_written_as_if_new(tmp_path):
    """A run into a prefix that holds an earlier run's shards (another shard count) leaves
    only its own: the documented glob never counts a record twice."""
    prefix = str(tmp_path / "out" / "prediction_logs")
    os.makedirs(tmp_path / "out")
    for i in range(3):  # an earlier run's three shards
        helpers.write_tfrecords(f"{prefix}-{i:05d}-of-00003.gz", [b"old"])
    _write(prefix, [[b"a", b"b"], [b"c"]])
    files = tf.io.gfile.glob(f"{prefix}-*.gz")
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(records) == [b"a", b"b", b"c"]


def test_no_chunk_writes_one_empty_shard_and_no_staging_folder_is_left(tmp_path):
    _write(str(tmp_path / "logs"), [])
    assert os.listdir(tmp_path) == ["logs-00000-of-00001.gz"]
    assert list(tf.data.TFRecordDataset(str(tmp_path / "logs-00000-of-00001.gz"),
                                        compression_type="GZIP")) == []


def test_a_suffix_without_gz_writes_uncompressed_tfrecords(tmp_path):
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create([[b"a"], [b"b", b"c"]])
             | WriteRecordChunks(str(tmp_path / "out"), ".tfrecord"))
    files = sorted(tf.io.gfile.glob(str(tmp_path / "out-*.tfrecord")))
    assert files and all(re.fullmatch(r"out-\d{5}-of-\d{5}\.tfrecord", os.path.basename(f))
                         for f in files)
    assert sorted(r.numpy() for r in tf.data.TFRecordDataset(files)) == [b"a", b"b", b"c"]


def test_windowed_chunks_are_all_written_into_one_file_set(tmp_path):
    with beam.Pipeline() as pipeline:
        _ = (pipeline
             | beam.Create([(0, [b"a"]), (30, [b"b", b"c"]), (90, [])])
             | beam.MapTuple(lambda second, chunk: window.TimestampedValue(chunk, second))
             | beam.WindowInto(window.FixedWindows(10))
             | WriteRecordChunks(str(tmp_path / "out")))
    files = tf.io.gfile.glob(str(tmp_path / "out-*.gz"))
    assert sorted(r.numpy() for r in tf.data.TFRecordDataset(files, "GZIP")) == [
        b"a", b"b", b"c"]


def test_an_unbounded_input_is_refused_when_the_pipeline_is_built(tmp_path):
    pipeline = beam.Pipeline()
    chunks = pipeline | beam.Create([[b"a"]])
    chunks.is_bounded = False
    with pytest.raises(ValueError, match="bounded PCollection"):
        _ = chunks | WriteRecordChunks(str(tmp_path / "out"))


def test_a_failed_bundles_file_is_never_yielded(tmp_path):
    """A DoFn kept after its bundle failed starts the next bundle in a new file: the failed
    one's stays in the staging folder, which publishing deletes."""
    stage = records_lib._StageChunks(str(tmp_path / "staging"), ".gz")
    stage.start_bundle()
    stage.process([b"lost"])  # the bundle fails here: no finish_bundle
    stage.start_bundle()
    stage.process([b"kept"])
    (staged,) = [value.value for value in stage.finish_bundle()]
    assert len(os.listdir(tmp_path / "staging")) == 2
    assert [r.numpy() for r in tf.data.TFRecordDataset(staged, "GZIP")] == [b"kept"]


def test_dead_letters_round_trip_and_are_counted(tmp_path):
    failures = [Failure("decode", "DecodeError", "bad bytes", b"\xff", "m", "eval",
                        "f.gz:record 3"),
                Failure("read", "DamagedFile", "cut", split="eval", source="f.gz", lost=40)]
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(failures) | WriteFailures(str(tmp_path / "failures"))
    assert sorted(read_failures(str(tmp_path / "failures-*.gz")),
                  key=lambda f: f.stage) == sorted(failures, key=lambda f: f.stage)
    counters = _counters(pipeline.result)
    assert counters[f"{metrics.FAILURES}|m|eval|decode"] == 1
    assert counters[f"{metrics.FAILURES}||eval|read"] == 40
    assert Failure.from_example(tf.train.Example(features=tf.train.Features(feature={
        "stage": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"decode"])),
        "error_type": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"E"])),
        "message": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"m"]))}))
        .SerializeToString()) == Failure("decode", "E", "m")


NO_TENSORFLOW = r'''
import os, sys
import numpy as np, torch
import apache_beam as beam
from inference import bounded
from inference.data import examples
from inference.io import tfrecord, encoding
from inference.io.records import ReadRecords, WriteRecordChunks, estimate_lost
from inference.io import records as records_lib
from inference.io.dead_letters import WriteFailures, read_failures
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.engine.models import create_handlers

class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2

folder = sys.argv[1]
torch.jit.save(torch.jit.script(Double()), f"{folder}/double.pt")
records = [examples.serialize({"x": [float(i)], "id": [i]}) for i in range(100)]
records += [b"\xff not an example", examples.serialize({"y": [1.0], "id": [7]})]
with open(f"{folder}/data.gz", "wb") as raw:
    writer = tfrecord.GzipWriter(raw)
    writer.write(tfrecord.frame(records))
    writer.close()
config = InferenceConfig(routing="ab", routing_feature="id", fractions=[0.5, 0.5], models=[
    ModelConfig(name=name, uri=f"{folder}/double.pt", inputs=InputSpec(features=["x"]))
    for name in ("a", "b")])
handlers = create_handlers(config)
plan = bounded.Plan(config, handlers, {"eval": [f"{folder}/data.gz"]},
                    [bounded.Output(name, "eval", f"{folder}/{name}/logs", encoding.encode_logs,
                                    "PredictionLogs") for name in ("a", "b")],
                    f"{folder}/failures")
with beam.Pipeline() as pipeline:
    plan.expand(pipeline)
failures = list(read_failures(f"{folder}/failures-*.gz"))
logs = 0
for name in ("a", "b"):
    for path in os.listdir(f"{folder}/{name}"):
        with open(f"{folder}/{name}/{path}", "rb") as raw:
            logs += sum(len(r) for r in tfrecord.read_records(raw))
print(logs, sorted(f.stage for f in failures), "tensorflow" in sys.modules)
'''


def test_a_routed_run_with_dead_letters_never_imports_tensorflow(tmp_path):
    """What a worker runs for a PyTorch model (reading, A/B routing by a feature, decoding,
    inference, encoding, dead letters): TensorFlow would add seconds and hundreds of MB to
    every worker process."""
    script = tmp_path / "run.py"  # a file: TorchScript reads the module's source
    script.write_text(NO_TENSORFLOW)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT, timeout=300, env={**os.environ,
                                                                "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-2] == "100 ['decode', 'preprocess'] False"
