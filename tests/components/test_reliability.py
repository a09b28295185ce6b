"""Bad input, faulty models and thresholds: every record ends predicted or dead-lettered."""
import gzip
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import torch
from tfx.types import standard_artifacts

from components.bulk_inferrer import executor, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from tests import helpers
from tests.components import faulty_models

FEATURES = ["f0", "f1", "f2"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _good(n, seed=0):
    return helpers.float_examples(np.random.RandomState(seed).rand(n, 3), FEATURES)


@pytest.fixture(scope="module")
def sum_model(tmp_path_factory):
    """A state dict of SumModel (loaded with its class: no pickle of code)."""
    artifact = helpers.model_artifact(str(tmp_path_factory.mktemp("sum_model")))
    torch.save(faulty_models.SumModel().state_dict(), f"{helpers.serving_dir(artifact)}/m.pt")
    return artifact


def _config(**model_options):
    return InferenceConfig(
        models=[ModelConfig(
            name="sum", framework="pytorch", inputs=InputSpec(features=FEATURES),
            max_batch_size=8,
            options={"model_class": "tests.components.faulty_models.SumModel",
                     "model_params": model_options})],
        timeout_secs=model_options.pop("timeout_secs", None))


def _run(tmp_path, examples, model, config, max_failure_fraction=1.0, beam_args=(),
         **props):
    outputs = {
        spec.INFERENCE_RESULT_KEY: [helpers.output_artifact(
            standard_artifacts.InferenceResult, str(tmp_path / "result"))],
        spec.FAILURES_KEY: [helpers.output_artifact(spec.InferenceFailures,
                                                    str(tmp_path / "failures"))]}
    props = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
             spec.INFERENCE_CONFIG_KEY: config.to_json(),
             spec.MAX_FAILURE_FRACTION_KEY: max_failure_fraction, **props}
    executor.Executor(helpers.beam_context(tmp_path, beam_args=beam_args)).Do(
        {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [model]}, outputs, props)
    return outputs[spec.INFERENCE_RESULT_KEY][0], outputs[spec.FAILURES_KEY][0]


def _failures(artifact):
    return helpers.read_failures(artifact.uri)


def _truncated_file(path, records):
    helpers.write_tfrecords(path, records)
    data = gzip.decompress(open(path, "rb").read())
    with open(path, "wb") as f:  # the last record loses its tail, as in a cut-off upload
        f.write(gzip.compress(data[:-7]))


def test_bad_input_matrix_ends_in_dead_letters_with_stage_and_reason(tmp_path, sum_model):
    good = _good(40)
    bad = {
        "not an example": (b"\xff\x00 definitely not a tf.Example", "decode"),
        "missing feature": (helpers.example({"f0": [1.0], "f1": [2.0]}), "preprocess"),
        "wrong dtype": (helpers.example({"f0": [b"x"], "f1": [1.0], "f2": [1.0]}), None),
        "wrong shape": (helpers.example({"f0": [1.0], "f1": [1.0, 2.0, 3.0], "f2": [1.0]}),
                        "preprocess"),
        "nan": (helpers.example({"f0": [float("nan")], "f1": [1.0], "f2": [1.0]}),
                "preprocess"),
        "inf": (helpers.example({"f0": [1.0], "f1": [float("inf")], "f2": [1.0]}),
                "preprocess"),
        "oversized": (helpers.example({"f0": list(np.ones(1_000_000)), "f1": [1.0],
                                       "f2": [1.0]}), "preprocess"),
    }
    records = good[:20] + [r for r, _ in bad.values()] + good[20:]
    root = tmp_path / "examples"
    examples = helpers.examples_artifact(str(root), {"eval": records, "empty": []})
    truncated = _good(5, seed=1)
    _truncated_file(str(root / "Split-eval" / "data_tfrecord-00001-of-00002.gz"), truncated)

    result, failures = _run(tmp_path, examples, sum_model, _config())

    dead = _failures(failures)
    by_record = {f.record: f for f in dead if f.stage != "read"}
    for name, (record, stage) in bad.items():
        assert record in by_record, f"{name} record is not in the dead letters"
        failure = by_record[record]
        assert failure.model == "sum" and failure.split == "eval" and failure.message
        if stage:
            assert failure.stage == stage, (name, failure)
        else:  # bytes where floats are expected: caught at decode or at input mapping
            assert failure.stage in ("decode", "preprocess"), (name, failure)
    assert "must hold exactly 1 value" in by_record[bad["wrong shape"][0]].message
    assert "NaN or infinite" in by_record[bad["nan"][0]].message
    assert "'f2' is missing" in by_record[bad["missing feature"][0]].message
    read = [f for f in dead if f.stage == "read"]
    assert len(read) == 1 and "data_tfrecord-00001" in read[0].source

    logs = helpers.read_prediction_logs(f"{result.uri}/prediction_logs-*.gz")
    read_ok = len(records) + len(truncated) - 1  # the damaged last record is unreadable
    assert len(logs) == len(good) + len(truncated) - 1
    assert result.get_int_custom_property("examples_in") == read_ok
    assert result.get_int_custom_property("predictions") + len(bad) == read_ok
    assert result.get_int_custom_property("failures") == len(bad) + 1  # + the damaged file
    assert failures.get_int_custom_property("predictions") == len(logs)
    for log in logs:  # the model's own output: the sum of the features
        values = tf.train.Example.FromString(
            log.predict_log.request.inputs["examples"].string_val[0]).features.feature
        out = tf.make_ndarray(log.predict_log.response.outputs["output_0"])
        np.testing.assert_allclose(out[0, 0], sum(values[f].float_list.value[0]
                                                  for f in FEATURES), rtol=1e-6)


def test_above_max_failure_fraction_the_component_fails_saying_where(tmp_path, sum_model):
    records = _good(20) + [b"garbage"] * 3
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {"eval": records})
    with pytest.raises(RuntimeError) as raised:
        _run(tmp_path, examples, sum_model, _config(), max_failure_fraction=0.1)
    message = str(raised.value)
    assert "3 of 23 records failed, 20 predicted" in message and "3 at decode" in message
    assert "model 'sum', first failure: " in message and " at decode (" in message
    assert str(tmp_path / "failures") in message
    assert len(_failures(helpers.output_artifact(spec.InferenceFailures,
                                                 str(tmp_path / "failures")))) == 3


def test_a_model_that_raises_on_some_inputs_fails_only_those(tmp_path, sum_model):
    x = np.random.RandomState(3).rand(30, 3)
    x[[4, 17], 0] = faulty_models.RAISE_MARKER
    examples = helpers.examples_artifact(str(tmp_path / "examples"),
                                         {"eval": helpers.float_examples(x, FEATURES)})
    result, failures = _run(tmp_path, examples, sum_model, _config())
    dead = _failures(failures)
    assert sorted(f.stage for f in dead) == ["inference", "inference"]
    assert all("cannot score RAISE_MARKER" in f.message for f in dead)
    assert result.get_int_custom_property("predictions") == 28


def test_a_model_that_hangs_on_some_inputs_times_out_only_those(tmp_path, sum_model):
    x = np.random.RandomState(4).rand(24, 3)
    x[[5], 0] = faulty_models.SLOW_MARKER
    examples = helpers.examples_artifact(str(tmp_path / "examples"),
                                         {"eval": helpers.float_examples(x, FEATURES)})
    config = _config(sleep_secs=3.0, timeout_secs=1)
    result, failures = _run(tmp_path, examples, sum_model, config)
    dead = _failures(failures)
    assert [f.stage for f in dead] == ["timeout"]
    assert tf.train.Example.FromString(dead[0].record).features.feature[
        "f0"].float_list.value[0] == faulty_models.SLOW_MARKER
    assert result.get_int_custom_property("predictions") == 23


def test_no_examples_at_all_is_a_clear_error_with_fail_on_empty_input(tmp_path, sum_model):
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {"eval": []})
    with pytest.raises(ValueError, match="no examples to infer.*Split-eval"):
        _run(tmp_path, examples, sum_model, _config(),
             **{spec.FAIL_ON_EMPTY_INPUT_KEY: 1})


_RUN_ALONE = r'''
import sys, time
import numpy as np
from tests import helpers
from tests.components import faulty_models
from tests.components.test_reliability import FEATURES, _config, _run
import pathlib, torch
tmp = pathlib.Path(sys.argv[1])
marker, mode, options = float(sys.argv[2]), sys.argv[3], eval(sys.argv[4])
x = np.random.RandomState(5).rand(40, 3)
x[17, 0] = marker
examples = helpers.examples_artifact(str(tmp / "examples"),
                                     {"eval": helpers.float_examples(x, FEATURES)})
model = helpers.model_artifact(str(tmp / "model"))
torch.save(faulty_models.SumModel().state_dict(), f"{helpers.serving_dir(model)}/m.pt")
started = time.time()
try:
    result, failures = _run(tmp, examples, model, _config(**options), beam_args=[
        f"--direct_running_mode={mode}"])
    print("PREDICTIONS", result.get_int_custom_property("predictions"))
except Exception as e:
    print("RAISED", e)
print("DO_SECONDS", round(time.time() - started))
'''


def _run_alone(tmp_path, marker, mode="in_memory", timeout=240, **options):
    """Runs the executor in a process of its own; returns its output and how long the
    whole process took to end."""
    script = tmp_path / "run_alone.py"
    script.write_text(_RUN_ALONE)
    started = time.time()
    out = subprocess.run([sys.executable, str(script), str(tmp_path), str(marker), mode,
                          repr(options)], capture_output=True, text=True, timeout=timeout,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    return out.stdout + out.stderr[-3000:], time.time() - started


def test_a_hung_model_times_out_and_the_process_still_exits(tmp_path):
    """A record that makes the model hang for an hour: its batch times out, the record
    alone times out again and is dead-lettered, the run completes, and the process ends
    (the hung call is left in a daemon thread, which does not hold the interpreter)."""
    output, seconds = _run_alone(tmp_path, faulty_models.SLOW_MARKER, sleep_secs=3600.0,
                                 timeout_secs=2)
    assert "PREDICTIONS 39" in output, output
    assert seconds < 200, output


@pytest.mark.parametrize("marker, evidence", [
    (faulty_models.DIE_MARKER, "exited with return code 13"),
    (faulty_models.CRASH_MARKER, "Segmentation fault"),
])
def test_a_dying_worker_fails_the_run_naming_model_batch_and_records(tmp_path, marker,
                                                                     evidence):
    """A worker process that exits, or crashes in native code: the run fails saying which
    model, how big the batch in flight was and which records it held (the poison record is
    record 17), with the crashing thread's Python traceback for a crash."""
    output, _ = _run_alone(tmp_path, marker, mode="multi_processing")
    assert "RAISED BulkInferrer: a Beam worker process died" in output, output
    assert "model 'sum' was inferring a batch of 8 record(s)" in output, output
    assert "data_tfrecord-00000-of-00001.gz:record 16 to record 23" in output, output
    if marker == faulty_models.CRASH_MARKER:
        assert "Segmentation fault" in output and "in forward" in output, output


def test_a_record_that_fails_at_encoding_is_a_failure_not_a_prediction(tmp_path,
                                                                      sum_model):
    x = np.random.RandomState(6).rand(30, 3)
    x[9, 0] = faulty_models.RAISE_MARKER
    examples = helpers.examples_artifact(str(tmp_path / "examples"),
                                         {"eval": helpers.float_examples(x, FEATURES)})
    (tmp_path / "handler").mkdir()
    (tmp_path / "handler" / "README").write_text("the handler builds its model itself")
    config = InferenceConfig(models=[ModelConfig(
        name="sum", framework="custom", uri=str(tmp_path / "handler"),
        inputs=InputSpec(features=FEATURES),
        options={"handler": "tests.components.faulty_models.UnencodableOnMarker"})])
    result, failures = _run(tmp_path, examples, sum_model, config)
    [dead] = _failures(failures)
    assert (dead.stage, dead.model, dead.split) == ("encoding", "sum", "eval")
    assert "complex" in dead.message and dead.source.endswith(":record 9")
    assert len(helpers.read_prediction_logs(f"{result.uri}/prediction_logs-*.gz")) == 29
    assert result.get_int_custom_property("predictions") == 29
    assert result.get_int_custom_property("failures") == 1
    assert result.get_int_custom_property("examples_in") == 30


def test_a_gzip_file_named_without_gz_is_read_whole(tmp_path, sum_model):
    root = tmp_path / "examples"
    examples = helpers.examples_artifact(str(root), {"eval": _good(1000)})
    helpers.write_tfrecords(str(root / "Split-eval" / "data_tfrecord-00001-of-00002"),
                            _good(1000, seed=1))  # gzipped, no .gz
    result, failures = _run(tmp_path, examples, sum_model, _config(), max_failure_fraction=0.01)
    assert result.get_int_custom_property("examples_in") == 2000
    assert result.get_int_custom_property("predictions") == 2000
    assert not _failures(failures)


def test_a_file_that_cannot_be_read_at_all_fails_the_run_unless_skipped(tmp_path, sum_model):
    root = tmp_path / "examples"
    examples = helpers.examples_artifact(str(root), {"eval": _good(200)})
    (root / "Split-eval" / "data_tfrecord-00001-of-00002.gz").write_bytes(b"PAR1" * 500)
    with pytest.raises(RuntimeError, match=r"1 file\(s\) could not be read at all.*"
                                           r"skip_unreadable_files=True"):
        _run(tmp_path, examples, sum_model, _config())
    dead = _failures(helpers.output_artifact(spec.InferenceFailures,
                                             str(tmp_path / "failures")))
    assert [(f.stage, f.lost) for f in dead] == [("read", 0)]
    assert "not a TFRecord file" in dead[0].message and "00001-of-00002" in dead[0].source

    config = _config()
    config.skip_unreadable_files = True
    result, _ = _run(tmp_path / "skipped", examples, sum_model, config)
    assert result.get_int_custom_property("unreadable_files") == 1
    assert result.get_int_custom_property("unread_bytes") == 2000
    assert result.get_int_custom_property("predictions") == 200
