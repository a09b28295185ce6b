"""BulkInferrer executor on real models and examples: parity with TFX's own BulkInferrer,
PyTorch parity with calling the TorchScript module, figures, blessing."""
import json

import numpy as np
import pytest
import tensorflow as tf
import torch
from tfx.components.bulk_inferrer import executor as tfx_executor
from tfx.proto import bulk_inferrer_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.bulk_inferrer import executor, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from tests import helpers

FEATURES = ["f0", "f1", "f2"]
WEIGHTS = [0.5, -1.0, 2.0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.RandomState(7)
    splits = {"train": rng.rand(150, 3).astype(np.float32),
              "eval": rng.rand(90, 3).astype(np.float32)}
    root = tmp_path_factory.mktemp("examples")
    artifact = helpers.examples_artifact(
        str(root), {s: helpers.float_examples(x, FEATURES) for s, x in splits.items()})
    return artifact, splits


@pytest.fixture(scope="module")
def tf_model(tmp_path_factory):
    artifact = helpers.model_artifact(str(tmp_path_factory.mktemp("tf_model")))
    helpers.save_example_parsing_model(helpers.serving_dir(artifact), FEATURES, WEIGHTS, 0.1)
    return artifact


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    torch.manual_seed(0)
    module = torch.jit.script(torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)))
    artifact = helpers.model_artifact(str(tmp_path_factory.mktemp("torch_model")))
    torch.jit.save(module, f"{helpers.serving_dir(artifact)}/model.pt")
    return artifact, module


def _properties(**kwargs):
    props = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}"}
    for key, value in kwargs.items():
        props[key] = value if isinstance(value, str) else (
            value.to_json() if hasattr(value, "to_json") else proto_utils.proto_to_json(value))
    return props


def _run(executor_cls, tmp_path, inputs, props, output_key=spec.INFERENCE_RESULT_KEY):
    kind = (standard_artifacts.Examples if output_key == spec.OUTPUT_EXAMPLES_KEY
            else standard_artifacts.InferenceResult)
    output = helpers.output_artifact(kind, str(tmp_path / executor_cls.__module__ / output_key))
    executor_cls(helpers.beam_context(tmp_path)).Do(inputs, {output_key: [output]}, props)
    return output


def _by_example(logs):
    return {next(iter(log.predict_log.request.inputs.values())).string_val[0]: log
            for log in logs}


def _feature_values(record: bytes) -> tuple:
    feature = tf.train.Example.FromString(record).features.feature
    return tuple(feature[name].float_list.value[0] for name in FEATURES)


def test_prediction_logs_equal_tfx_bulk_inferrer(tmp_path, data, tf_model):
    examples, splits = data
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [tf_model]}
    props = _properties()
    ours = _run(executor.Executor, tmp_path, inputs, props)
    theirs = _run(tfx_executor.Executor, tmp_path, inputs, props)

    our_logs = helpers.read_prediction_logs(f"{ours.uri}/prediction_logs-*.gz")
    their_logs = helpers.read_prediction_logs(f"{theirs.uri}/prediction_logs-*.gz")
    assert len(our_logs) == len(their_logs) == sum(len(x) for x in splits.values())
    ours_by, theirs_by = _by_example(our_logs), _by_example(their_logs)
    assert ours_by.keys() == theirs_by.keys()
    for key, log in theirs_by.items():
        mine = ours_by[key].predict_log.response.outputs["outputs"]
        expected = log.predict_log.response.outputs["outputs"]
        np.testing.assert_allclose(tf.make_ndarray(mine), tf.make_ndarray(expected), atol=1e-6)
        assert [f.name for f, _ in mine.ListFields()] == [f.name for f, _ in
                                                          expected.ListFields()]
        # Same request (example, signature); outputs equal up to batch-order float noise.
        assert ours_by[key].predict_log.request == log.predict_log.request
        assert ours_by[key].predict_log.response.model_spec == log.predict_log.response.model_spec
    assert ours.get_int_custom_property("examples_in") == len(our_logs)
    assert ours.get_int_custom_property("predictions") == len(our_logs)
    assert ours.get_int_custom_property("failures") == 0


def test_output_examples_equal_tfx_bulk_inferrer(tmp_path, data, tf_model):
    examples, splits = data
    output_spec = bulk_inferrer_pb2.OutputExampleSpec(output_columns_spec=[
        bulk_inferrer_pb2.OutputColumnsSpec(predict_output=bulk_inferrer_pb2.PredictOutput(
            output_columns=[bulk_inferrer_pb2.PredictOutputCol(
                output_key="outputs", output_column="score")]))])
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [tf_model]}
    props = _properties(output_example_spec=output_spec,
                        data_spec=bulk_inferrer_pb2.DataSpec(example_splits=["eval"]))
    ours = _run(executor.Executor, tmp_path, inputs, props, spec.OUTPUT_EXAMPLES_KEY)
    theirs = _run(tfx_executor.Executor, tmp_path, inputs, props, spec.OUTPUT_EXAMPLES_KEY)
    assert ours.split_names == theirs.split_names == '["eval"]'
    mine = helpers.read_examples(f"{ours.uri}/Split-eval/examples-*.gz")
    expected = helpers.read_examples(f"{theirs.uri}/Split-eval/examples-*.gz")
    assert len(mine) == len(expected) == len(splits["eval"])
    def scores(examples):
        return {_feature_values(e.SerializeToString()): e.features.feature["score"]
                .float_list.value[0] for e in examples}

    mine, expected = scores(mine), scores(expected)
    assert mine.keys() == expected.keys()
    np.testing.assert_allclose([mine[k] for k in expected], list(expected.values()), atol=1e-6)


def test_pytorch_predictions_equal_torchscript_forward(tmp_path, data, torch_model):
    examples, splits = data
    artifact, module = torch_model
    config = InferenceConfig(models=[ModelConfig(
        name="mlp", inputs=InputSpec(features=FEATURES), max_batch_size=32)])
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [artifact]}
    output = _run(executor.Executor, tmp_path, inputs, _properties(inference_config=config))

    logs = helpers.read_prediction_logs(f"{output.uri}/prediction_logs-*.gz")
    x = np.concatenate([splits["eval"], splits["train"]])
    expected = module(torch.from_numpy(x)).detach().numpy()
    by_row = {_feature_values(record): log for record, log in _by_example(logs).items()}
    assert len(logs) == len(by_row) == len(x)
    for row, want in zip(x, expected):
        log = by_row[tuple(row.tolist())]
        assert log.predict_log.request.model_spec.name == "mlp"
        got = tf.make_ndarray(log.predict_log.response.outputs["output_0"])
        assert got.shape == (1, 2)
        np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-6)
    figures = json.loads(output.get_string_custom_property("figures"))["models"]["mlp"]
    assert figures["examples_in"] == figures["predictions"] == len(x)
    assert figures["failures"] == 0
    assert 0 < figures["mean_batch_size"] <= 32
    assert figures["batches"] >= len(x) / 32
    pipeline_seconds = output.get_float_custom_property("pipeline_seconds")
    assert 0 < figures["active_seconds"] < pipeline_seconds


def test_not_blessed_model_is_skipped(tmp_path, data, torch_model):
    examples, _ = data
    blessing = helpers.output_artifact(standard_artifacts.ModelBlessing, str(tmp_path / "b"))
    blessing.set_int_custom_property("blessed", 0)
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [torch_model[0]],
              spec.MODEL_BLESSING_KEY: [blessing]}
    output = _run(executor.Executor, tmp_path, inputs, _properties())
    assert not tf.io.gfile.glob(f"{output.uri}/prediction_logs-*")
    assert not output.has_custom_property("examples_in")


def test_missing_model_input_says_what_to_connect(tmp_path, data):
    examples, _ = data
    with pytest.raises(ValueError, match="connect `model`"):
        _run(executor.Executor, tmp_path, {spec.EXAMPLES_KEY: [examples]}, _properties())
