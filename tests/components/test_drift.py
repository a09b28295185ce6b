"""Drift and skew: BulkInferrer runs on a sample of the taxi data compared with a baseline
run (the same data, fares multiplied by 3, a swapped model), and with the training data's
statistics; the Drift section of the report in a real browser."""
import csv
import os

import numpy as np
import pytest
import tensorflow_data_validation as tfdv
import torch
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components.bulk_inferrer import drift, executor, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.observe.drift import DriftConfig, DriftError
from tests import browser, helpers
from tests.runners.conftest import REPO, TAXI_CSV

FEATURES = ["fare", "trip_miles", "trip_seconds"]
ROWS = 600
SCORE = "model.outputs"  # the feature of the TensorFlow model's output


def _taxi(fare_factor: float = 1.0):
    """The first ROWS distinct complete taxi trips (fare, miles, seconds), fares multiplied
    (the sample keeps one of identical records)."""
    rows = {}
    with open(TAXI_CSV) as f:
        for row in csv.DictReader(f):
            if all(row[name] for name in FEATURES):
                rows[tuple(float(row[name]) for name in FEATURES)] = None
            if len(rows) == ROWS:
                break
    x = np.array(list(rows), np.float32)
    x[:, 0] *= fare_factor
    return x


def _examples(root: str, fare_factor: float = 1.0):
    return helpers.examples_artifact(root, {"eval": helpers.float_examples(
        _taxi(fare_factor), FEATURES)})


def _model(root: str, weights):
    """sigmoid(x @ weights - 2), parsing tf.Examples: a taxi trip's score."""
    artifact = helpers.model_artifact(root)
    helpers.save_example_parsing_model(helpers.serving_dir(artifact), FEATURES, weights, -2.0)
    return artifact


@pytest.fixture(scope="module")
def taxi(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    return {"root": root,
            "examples": _examples(str(root / "examples")),
            "fares_x3": _examples(str(root / "fares_x3"), 3.0),
            "model": _model(str(root / "model"), [0.1, 0.05, 0.0005]),
            "swapped": _model(str(root / "swapped"), [-0.05, 0.3, 0.001])}


def _run(taxi, name, examples, model, baseline=None, drift_config=None, statistics=None,
         schema=None, config=None):
    """Runs the executor with every output; returns them by key (also when it raises:
    `outputs["error"]`)."""
    root = taxi["root"] / name
    outputs = {key: helpers.output_artifact(kind, str(root / key)) for key, kind in (
        (spec.INFERENCE_RESULT_KEY, standard_artifacts.InferenceResult),
        (spec.FAILURES_KEY, spec.InferenceFailures),
        (spec.PREDICTION_STATISTICS_KEY, standard_artifacts.ExampleStatistics),
        (spec.ANOMALIES_KEY, standard_artifacts.ExampleAnomalies))}
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [model]}
    for key, artifact in ((spec.BASELINE_KEY, baseline), (spec.STATISTICS_KEY, statistics),
                          (spec.SCHEMA_KEY, schema)):
        if artifact is not None:
            inputs[key] = [artifact]
    props = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}"}
    if drift_config:
        props[spec.DRIFT_CONFIG_KEY] = drift_config.to_json()
    if config:
        props[spec.INFERENCE_CONFIG_KEY] = config.to_json()
    try:
        executor.Executor(helpers.beam_context(taxi["root"], name)).Do(
            inputs, {k: [v] for k, v in outputs.items()}, props)
    except DriftError as e:
        outputs["error"] = e
    return outputs


def _anomalies(artifact, split="eval") -> anomalies_pb2.Anomalies:
    path = os.path.join(artifact_utils.get_split_uri([artifact], split), "SchemaDiff.pb")
    return anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))


def _report(outputs) -> str:
    path = outputs[spec.INFERENCE_RESULT_KEY].get_string_custom_property("report")
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def first(taxi):
    return _run(taxi, "first", taxi["examples"], taxi["model"])


def test_a_first_run_has_no_baseline_and_says_so(first):
    anomalies = first[spec.ANOMALIES_KEY]
    assert anomalies.get_string_custom_property("drift_verdict") == "no_baseline"
    assert anomalies.get_json_value_custom_property("blessed") == {"eval": 1}
    assert not _anomalies(anomalies).anomaly_info
    assert "id='no-baseline'" in _report(first)
    # Its statistics, StatisticsGen's layout, describe the run's predictions.
    stats = tfdv.load_stats_binary(os.path.join(
        first[spec.PREDICTION_STATISTICS_KEY].uri, "Split-eval", "FeatureStats.pb"))
    feature = tfdv.get_feature_stats(stats.datasets[0], tfdv.FeaturePath([SCORE]))
    assert feature.num_stats.common_stats.num_non_missing == ROWS
    assert 0.05 < feature.num_stats.mean < 0.95


def test_the_same_data_again_is_no_drift(taxi, first):
    second = _run(taxi, "same", taxi["examples"], taxi["model"],
                  baseline=first[spec.PREDICTION_STATISTICS_KEY],
                  drift_config=DriftConfig(action="fail"))
    assert "error" not in second
    result = second[spec.INFERENCE_RESULT_KEY]
    assert result.get_string_custom_property("drift_verdict") == "ok"
    assert result.get_float_custom_property(f"{SCORE}.drift") == 0.0
    assert not _anomalies(second[spec.ANOMALIES_KEY]).anomaly_info
    figures = browser.parse(_report(second)).figures
    assert figures[f"drift.eval.{SCORE}"] == 0.0


@pytest.fixture(scope="module")
def shifted(taxi, first):
    return _run(taxi, "fares_x3", taxi["fares_x3"], taxi["model"],
                baseline=first[spec.PREDICTION_STATISTICS_KEY],
                drift_config=DriftConfig(action="fail", jensen_shannon=0.1))


def test_fares_times_three_fail_the_run_after_writing_outputs_and_anomalies(shifted):
    assert "error" in shifted, "fares x3 did not fail the run"
    assert f"{SCORE} Jensen-Shannon divergence" in str(shifted["error"])
    # Written before the gate: every prediction, the statistics, the anomalies, the report.
    logs = helpers.read_prediction_logs(
        f"{shifted[spec.INFERENCE_RESULT_KEY].uri}/prediction_logs-*.gz")
    assert len(logs) == ROWS
    anomalies = _anomalies(shifted[spec.ANOMALIES_KEY])
    reason = anomalies.anomaly_info[f"'{SCORE}'"].reason[0]
    assert reason.type == anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
    value = shifted[spec.ANOMALIES_KEY].get_float_custom_property(f"{SCORE}.drift")
    assert value > 0.1
    assert shifted[spec.ANOMALIES_KEY].get_json_value_custom_property("blessed") == {"eval": 0}
    assert shifted[spec.INFERENCE_RESULT_KEY].get_string_custom_property(
        "drift_verdict") == "drift"
    assert browser.parse(_report(shifted)).figures[f"drift.eval.{SCORE}"] == \
        pytest.approx(value, abs=1e-6)


def test_a_swapped_model_is_flagged(taxi, first):
    swapped = _run(taxi, "swapped", taxi["examples"], taxi["swapped"],
                   baseline=first[spec.PREDICTION_STATISTICS_KEY])
    assert "error" not in swapped  # action "warn" (the default)
    result = swapped[spec.INFERENCE_RESULT_KEY]
    assert result.get_string_custom_property("drift_verdict") == "drift"
    assert result.get_float_custom_property(f"{SCORE}.drift") > 0.1


def test_skew_against_training_statistics_flags_the_shifted_feature(taxi, first):
    root = taxi["root"] / "training"
    statistics = helpers.output_artifact(standard_artifacts.ExampleStatistics,
                                         str(root / "statistics"))
    statistics.split_names = artifact_utils.encode_split_names(["train"])
    train = tfdv.generate_statistics_from_tfrecord(
        os.path.join(taxi["examples"].uri, "Split-eval", "*.gz"))
    io_utils.write_bytes_file(os.path.join(statistics.uri, "Split-train", "FeatureStats.pb"),
                              train.SerializeToString())  # StatisticsGen's layout
    schema = helpers.output_artifact(standard_artifacts.Schema, str(root / "schema"))
    io_utils.write_pbtxt_file(os.path.join(schema.uri, "schema.pbtxt"),
                              tfdv.infer_schema(train))
    outputs = _run(taxi, "skew", taxi["fares_x3"], taxi["model"],
                   baseline=first[spec.PREDICTION_STATISTICS_KEY], statistics=statistics,
                   schema=schema)
    anomalies = _anomalies(outputs[spec.ANOMALIES_KEY])
    assert anomalies.anomaly_info["'fare'"].reason[0].type == \
        anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
    assert "'trip_miles'" not in anomalies.anomaly_info
    result = outputs[spec.INFERENCE_RESULT_KEY]
    assert result.get_float_custom_property("fare.skew") > 0.1
    # The same trips, described by StatisticsGen's Beam sketches and by the sample's
    # in-memory statistics: close, not equal.
    assert result.get_float_custom_property("trip_miles.skew") < 0.05


class Embedder(torch.nn.Module):
    """48 values per record from the three features: an embedding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 48)

    def forward(self, x):
        return torch.tanh(self.linear(x / torch.tensor([20.0, 5.0, 1000.0])))


def test_embeddings_drift_by_centroid_and_are_drawn_as_a_projection(taxi, tmp_path):
    path = str(taxi["root"] / "embedder.pt")
    torch.jit.save(torch.jit.script(Embedder()), path)
    config = InferenceConfig(models=[ModelConfig(name="embedder", uri=path,
                                                 inputs=InputSpec(features=FEATURES))])
    base = _run(taxi, "embed-1", taxi["examples"], taxi["model"], config=config)
    again = _run(taxi, "embed-2", taxi["fares_x3"], taxi["model"], config=config,
                 baseline=base[spec.PREDICTION_STATISTICS_KEY])
    result = again[spec.INFERENCE_RESULT_KEY]
    output = next(key[:-len(".drift")] for key in result.mlmd_artifact.custom_properties
                  if key.endswith(".drift") and not key.endswith(".norm.drift"))
    assert result.get_float_custom_property(f"{output}.drift") > 0.25
    page = _report(again)
    assert "argmax of" not in page and "a PCA projection of the sample" in page
    report_path = str(tmp_path / "report.html")
    with open(report_path, "w") as f:
        f.write(page)
    parsed = browser.parse(browser.dump_dom(report_path, str(tmp_path / "profile")))
    assert "drift" in parsed.sections
    png = os.path.join(REPO, "outputs", "test-screenshots", "report-drift-embedding.png")
    pixels = browser.screenshot(report_path, png, str(tmp_path / "profile"))
    assert pixels.std() > 20


def test_the_drift_section_renders_in_a_browser(shifted, tmp_path):
    path = shifted[spec.INFERENCE_RESULT_KEY].get_string_custom_property("report")
    dom = browser.dump_dom(path, str(tmp_path / "profile"))
    parsed = browser.parse(dom)
    assert parsed.sections[:3] == ["summary", "predictions", "drift"]
    assert f"drift.eval.{SCORE}" in parsed.figures
    assert "drift-verdict" in dom and ">drift</b>" in dom
    png = os.path.join(REPO, "outputs", "test-screenshots", "report-drift.png")
    pixels = browser.screenshot(path, png, str(tmp_path / "profile"))
    assert pixels.std() > 20
    colored = np.abs(pixels.astype(int) - pixels.mean(axis=2, keepdims=True)).max(axis=2)
    assert (colored > 40).mean() > 0.001  # the overlaid histograms


def test_previous_run_is_resolved_in_ml_metadata():
    from tfx.dsl.compiler import compiler
    from tfx.orchestration import pipeline as pipeline_lib
    from tfx.types import channel_utils

    from components import BulkInferrer
    examples = channel_utils.as_channel([standard_artifacts.Examples()])
    inferrer = BulkInferrer(examples=examples, baseline=drift.previous_run("Scorer"),
                            drift_config=DriftConfig(action="fail")).with_id("Scorer")
    ir = compiler.Compiler().compile(pipeline_lib.Pipeline(
        pipeline_name="p", pipeline_root="/tmp/p", components=[inferrer]))
    assert len(ir.nodes) == 1  # no edge from the component to itself
