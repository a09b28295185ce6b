"""Bad input, faulty models and thresholds: every record ends predicted or dead-lettered."""
import gzip

import numpy as np
import pytest
import tensorflow as tf
import torch
from tfx.types import standard_artifacts

from components.bulk_inferrer import executor, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.failures import Failure
from tests import helpers
from tests.components import faulty_models

FEATURES = ["f0", "f1", "f2"]


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


def _run(tmp_path, examples, model, config, max_failure_fraction=1.0):
    outputs = {
        spec.INFERENCE_RESULT_KEY: [helpers.output_artifact(
            standard_artifacts.InferenceResult, str(tmp_path / "result"))],
        spec.FAILURES_KEY: [helpers.output_artifact(spec.InferenceFailures,
                                                    str(tmp_path / "failures"))]}
    props = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
             spec.INFERENCE_CONFIG_KEY: config.to_json(),
             spec.MAX_FAILURE_FRACTION_KEY: max_failure_fraction}
    executor.Executor(helpers.beam_context(tmp_path)).Do(
        {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [model]}, outputs, props)
    return outputs[spec.INFERENCE_RESULT_KEY][0], outputs[spec.FAILURES_KEY][0]


def _failures(artifact):
    files = tf.io.gfile.glob(f"{artifact.uri}/failures-*.gz")
    return [Failure.from_example(r.numpy())
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


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
    assert "3 of 23 records failed" in message and "3 at decode" in message
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


def test_no_examples_at_all_is_a_clear_error(tmp_path, sum_model):
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {"eval": []})
    with pytest.raises(ValueError, match="no examples to infer"):
        _run(tmp_path, examples, sum_model, _config())
