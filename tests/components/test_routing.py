"""Multi-model patterns through the executor: shadow, A/B, keyed (with a model cap) and
sequence; counts per model add up to the inputs and each prediction names its model."""
import numpy as np
import pytest
import tensorflow as tf
import torch
from tfx import types
from tfx.types import standard_artifacts

from components.bulk_inferrer import component, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.engine import routing
from tests import helpers
from tests.components.faulty_models import Offset

FEATURES = ["f0", "f1", "f2"]
N = 120
GROUPS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("routing")
    rng = np.random.RandomState(11)
    x = rng.rand(N, 3).astype(np.float32)
    records = [helpers.example({"f0": [float(r[0])], "f1": [float(r[1])], "f2": [float(r[2])],
                                "id": [i], "group": [GROUPS[i % 3]]})
               for i, r in enumerate(x)]
    records.append(helpers.example({"f0": [1.0], "f1": [1.0], "f2": [1.0], "id": [N],
                                    "group": ["unknown"]}))
    examples = helpers.examples_artifact(str(root / "examples"), {"eval": records})
    uris = {}
    for offset in (1, 2, 3):
        uris[offset] = str(root / f"m{offset}.pt")
        torch.jit.save(torch.jit.script(Offset(float(offset))), uris[offset])
    return examples, uris, tmp_path_factory.mktemp("runs")


def _model(name, uri, features=FEATURES, **kwargs):
    return ModelConfig(name=name, uri=uri, inputs=InputSpec(features=list(features)),
                       max_batch_size=16, **kwargs)


def _logs(result, name):
    logs = helpers.read_prediction_logs(f"{result.uri}/{name}/prediction_logs-*.gz")
    rows = []
    for log in logs:
        feature = tf.train.Example.FromString(
            log.predict_log.request.inputs["examples"].string_val[0]).features.feature
        assert log.predict_log.request.model_spec.name == name
        rows.append((feature, float(tf.make_ndarray(
            log.predict_log.response.outputs["output_0"])[0, 0])))
    return rows


def _sum(feature, names=FEATURES):
    return sum(feature[f].float_list.value[0] for f in names)


def _run(setup, config, **props):
    examples, _, runs = setup
    return helpers.run_bulk_inferrer(runs, {spec.EXAMPLES_KEY: [examples]}, config,
                                     max_failure_fraction="0.05", **props)


def test_shadow_every_model_sees_every_record(setup):
    _, uris, _ = setup
    result = _run(setup, InferenceConfig(models=[_model("one", uris[1]),
                                                 _model("two", uris[2])]))
    for name, offset in (("one", 1), ("two", 2)):
        rows = _logs(result, name)
        assert len(rows) == N + 1
        for feature, value in rows:
            assert value == pytest.approx(_sum(feature) + offset, rel=1e-5)
        assert result.get_int_custom_property(f"{name}.predictions") == N + 1


def test_ab_split_is_deterministic_and_adds_up(setup):
    _, uris, _ = setup
    config = InferenceConfig(models=[_model("a", uris[1]), _model("b", uris[2])],
                             routing="ab", fractions=[0.25, 0.75], routing_feature="id")
    first, second = _run(setup, config), _run(setup, config)
    ids = {}
    for name, offset in (("a", 1), ("b", 2)):
        rows = _logs(first, name)
        ids[name] = {f["id"].int64_list.value[0] for f, _ in rows}
        assert all(v == pytest.approx(_sum(f) + offset, rel=1e-5) for f, v in rows)
        assert ids[name] == {f["id"].int64_list.value[0] for f, _ in _logs(second, name)}
    assert not ids["a"] & ids["b"] and len(ids["a"]) + len(ids["b"]) == N + 1
    assert 0.1 < len(ids["a"]) / (N + 1) < 0.4
    assert first.get_int_custom_property("predictions") == N + 1


def test_ab_routes_a_record_that_does_not_parse_by_its_bytes():
    """Routing hashes it by its bytes, stably, instead of failing (its model then
    dead-letters it at decode, as the bad-input test in test_reliability shows)."""
    garbage = b"\xff\xfenot a tf.Example"
    index = routing.ab_index(garbage, 2, [0.5], "id")
    assert index in (0, 1) and index == routing.ab_index(garbage, 2, [0.5], "id")


def _keyed(uris, **kwargs):
    return InferenceConfig(
        models=[_model(f"m{o}", uris[o], keys=[g]) for o, g in zip((1, 2, 3), GROUPS)],
        routing="keyed", routing_feature="group", **kwargs)


def test_keyed_routes_each_key_to_its_model_within_a_model_cap(setup):
    _, uris, _ = setup
    capped = _run(setup, _keyed(uris, max_models_per_worker_hint=1))
    for offset, group in zip((1, 2, 3), GROUPS):
        rows = _logs(capped, f"m{offset}")
        assert len(rows) == N // 3
        assert {f["group"].bytes_list.value[0].decode() for f, _ in rows} == {group}
        assert all(v == pytest.approx(_sum(f) + offset, rel=1e-5) for f, v in rows)
    # The record whose key no model serves is a dead letter, not a loss.
    assert capped.get_int_custom_property("failures") == 1
    assert capped.get_int_custom_property("predictions") == N
    # Each model's batches ran inside Beam's KeyedModelHandler, and were timed there too.
    assert all(capped.get_float_custom_property(f"m{o}.active_seconds") > 0
               for o in (1, 2, 3))
    # With one model allowed in memory, serving three keys means evicting and reloading;
    # grouping records by key first avoids most of that thrashing.
    capped_loads = sum(capped.get_int_custom_property(f"m{o}.model_loads") for o in (1, 2, 3))
    grouped = _run(setup, _keyed(uris, max_models_per_worker_hint=1, group_by_key=True))
    grouped_loads = sum(grouped.get_int_custom_property(f"m{o}.model_loads")
                        for o in (1, 2, 3))
    assert capped_loads > 3
    assert 3 <= grouped_loads < capped_loads


def test_sequence_feeds_each_model_the_previous_outputs(setup):
    _, uris, _ = setup
    config = InferenceConfig(routing="sequence", models=[
        _model("first", uris[1]),
        _model("second", uris[2], features=FEATURES + ["first_output_0"])])
    result = _run(setup, config)
    first, second = _logs(result, "first"), _logs(result, "second")
    assert len(first) == len(second) == N + 1
    for feature, value in second:
        upstream = _sum(feature) + 1
        assert feature["first_output_0"].float_list.value[0] == pytest.approx(upstream)
        assert value == pytest.approx(_sum(feature) + upstream + 2, rel=1e-5)


def test_output_examples_of_one_inferrer_feed_the_next(setup, tmp_path):
    """Sequence across components: output_examples carry the score to a second inferrer."""
    from tfx.proto import bulk_inferrer_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components.bulk_inferrer import executor

    examples, uris, _ = setup
    first_out = helpers.output_artifact(standard_artifacts.Examples, str(tmp_path / "first"))
    output_spec = bulk_inferrer_pb2.OutputExampleSpec(output_columns_spec=[
        bulk_inferrer_pb2.OutputColumnsSpec(predict_output=bulk_inferrer_pb2.PredictOutput(
            output_columns=[bulk_inferrer_pb2.PredictOutputCol(
                output_key="output_0", output_column="first_score")]))])
    executor.Executor(helpers.beam_context(tmp_path, "first")).Do(
        {spec.EXAMPLES_KEY: [examples]}, {spec.OUTPUT_EXAMPLES_KEY: [first_out]},
        {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
         spec.OUTPUT_EXAMPLE_SPEC_KEY: proto_utils.proto_to_json(output_spec),
         spec.INFERENCE_CONFIG_KEY: InferenceConfig(models=[_model("first", uris[1])]).to_json(),
         spec.MAX_FAILURE_FRACTION_KEY: 0.05})
    assert first_out.split_names == '["eval"]'
    second = helpers.run_bulk_inferrer(
        tmp_path, {spec.EXAMPLES_KEY: [first_out]},
        InferenceConfig(models=[_model("second", uris[2], FEATURES + ["first_score"])]),
        max_failure_fraction="0.05")
    logs = helpers.read_prediction_logs(f"{second.uri}/prediction_logs-*.gz")
    assert len(logs) == N + 1  # every record, the "unknown" group one included
    for log in logs:
        feature = tf.train.Example.FromString(
            log.predict_log.request.inputs["examples"].string_val[0]).features.feature
        first_score = feature["first_score"].float_list.value[0]
        assert first_score == pytest.approx(_sum(feature) + 1, rel=1e-5)
        assert tf.make_ndarray(log.predict_log.response.outputs["output_0"]).item() == \
            pytest.approx(_sum(feature) + first_score + 2, rel=1e-5)


def test_stateful_batching_is_refused_in_bounded_runs(setup, tmp_path):
    """max_batch_duration_secs uses Beam's stateful batching, which lost records in bounded
    pipelines (the accounting caught it); the component says so up front."""
    _, uris, _ = setup
    config = InferenceConfig(models=[_model("m", uris[1], max_batch_duration_secs=1)])
    with pytest.raises(ValueError, match="is for streaming"):
        _run(setup, config)
    # ... and where the pipeline is defined, before any upstream component runs.
    examples = types.Channel(type=standard_artifacts.Examples)
    with pytest.raises(ValueError, match="is for streaming"):
        component.BulkInferrer(examples=examples, inference_config=config)
    with pytest.raises(ValueError, match="is for streaming"):
        component.BulkInferrer(examples=examples, inference_config=config.to_json())
    config.models[0].max_batch_duration_secs = None
    inferrer = component.BulkInferrer(examples=examples, inference_config=config)
    assert InferenceConfig.from_json(
        inferrer.exec_properties[spec.INFERENCE_CONFIG_KEY]) == config
