"""The whole pipeline under LocalDagRunner on a sample of the taxi data, run twice."""
import os
import re

import pytest
import tensorflow as tf
from tfx import v1 as tfx

import pipeline
from components import run_summary
from template import config
from tests import helpers

SAMPLE_ROWS = 3000


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = root / "data"
    data.mkdir()
    with open(os.path.join(config.DATA_PATH, "data.csv")) as src:
        lines = [line for _, line in zip(range(SAMPLE_ROWS + 1), src)]
    (data / "data.csv").write_text("".join(lines))
    metadata_path = str(root / "metadata.db")

    def run():
        tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(
            pipeline_name="test-pipeline",
            pipeline_root=str(root / "pipeline_root"),
            data_path=str(data),
            frameworks=("keras", "pytorch"),
            patterns=("ab", "keyed", "sequence"),
            train_num_steps=20,
            eval_num_steps=5,
            beam_pipeline_args=config.LOCAL_BEAM_PIPELINE_ARGS,
            metadata_connection_config=(
                tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))))
        return run_summary.render(metadata_path, "test-pipeline")

    first = run()
    return metadata_path, first, run()


def _states(metadata_path):
    store = run_summary.open_store(metadata_path)
    return {node: (state, execution) for node, state, execution in
            run_summary.node_states(store, run_summary.latest_run(store, "test-pipeline"))}, store


def test_every_component_completes_and_summary_reports_models(local_run):
    metadata_path, first_summary, _ = local_run
    models = ("keras", "pytorch")
    for model in models:
        assert f"BulkInferrer.{model}" in first_summary
        assert f"{model}: " in first_summary and " 0 failures" in first_summary
    inferring = re.findall(r"\((\d+\.\d\d) s inferring\)", first_summary)
    assert len(inferring) == first_summary.count(" examples inferred, ") >= len(models)
    assert all(float(seconds) > 0 for seconds in inferring)
    # PyTorch's model reads transformed features through the tf.Transform graph, which
    # loads with it and is timed apart; Keras's takes raw examples (the graph is inside).
    loads = dict(re.findall(r"^    (\w+): .* model load \d+ ms(.*)$", first_summary, re.M))
    assert re.fullmatch(r", tf\.Transform graph load \d+ ms", loads["pytorch"]), loads
    assert loads["keras"] == "", loads
    assert metadata_path in first_summary


def test_second_run_reuses_the_store_and_shows_cached_steps(local_run):
    metadata_path, _, second_summary = local_run
    states, _ = _states(metadata_path)
    expected = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
                "Trainer.keras", "Trainer.pytorch", "Trainer.sklearn", "BulkInferrer.keras",
                "BulkInferrer.pytorch", "BulkInferrer.sklearn", "BulkInferrer.ab",
                "BulkInferrer.keyed", "BulkInferrer.sequence"}
    assert set(states) == expected
    assert all(state in ("COMPLETE", "CACHED") for state, _ in states.values())
    assert "CACHED" in second_summary


def test_one_prediction_per_eval_example_for_each_model(local_run):
    metadata_path, _, _ = local_run
    store = run_summary.open_store(metadata_path)
    by_type = {t.id: t.name for t in store.get_artifact_types()}
    examples = [a for a in store.get_artifacts() if by_type[a.type_id] == "Examples"
                and "CsvExampleGen" in a.uri]
    eval_count = sum(1 for _ in tf.data.TFRecordDataset(
        tf.io.gfile.glob(f"{examples[0].uri}/Split-eval/*"), compression_type="GZIP"))
    # Each run's: the BulkInferrers run again on the second run (their baseline, the
    # first run's statistics, is a new input), so each has written two.
    results = [a for a in store.get_artifacts() if by_type[a.type_id] == "InferenceResult"
               and a.custom_properties["models"].string_value in ("keras", "pytorch",
                                                                   "sklearn")]
    assert len(results) == 6
    for artifact in results:
        logs = helpers.read_prediction_logs(f"{artifact.uri}/prediction_logs-*.gz")
        assert len(logs) == eval_count
        assert artifact.custom_properties["predictions"].int_value == eval_count
        assert artifact.custom_properties["failures"].int_value == 0


def test_raw_examples_through_transform_graph_match_transformed_examples(local_run):
    """BulkInferrer.pytorch scores raw examples with the Transform graph; the same model on
    Transform's own transformed examples gives the same predictions."""
    import numpy as np
    import torch

    from template import features

    metadata_path, _, _ = local_run
    store = run_summary.open_store(metadata_path)
    by_type = {t.id: t.name for t in store.get_artifact_types()}
    artifacts = store.get_artifacts()
    transformed = [a for a in artifacts if by_type[a.type_id] == "Examples"
                   and "/Transform/" in a.uri][0]
    model = [a for a in artifacts if by_type[a.type_id] == "Model"
             and "/Trainer.pytorch/" in a.uri][0]
    result = [a for a in artifacts if by_type[a.type_id] == "InferenceResult"
              and "/BulkInferrer.pytorch/" in a.uri][0]
    spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in features.MODEL_FEATURES}
    files = tf.io.gfile.glob(f"{transformed.uri}/Split-eval/*")
    parsed = [tf.io.parse_single_example(r, spec)
              for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    x = np.array([[p[n].numpy() for n in features.MODEL_FEATURES] for p in parsed],
                 dtype=np.float32)
    module = torch.jit.load(f"{model.uri}/Format-Serving/model.pt")
    expected = np.sort(module(torch.from_numpy(x)).detach().numpy().reshape(-1))
    logs = helpers.read_prediction_logs(f"{result.uri}/prediction_logs-*.gz")
    got = np.sort([tf.make_ndarray(log.predict_log.response.outputs["output_0"]).item()
                   for log in logs])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _pattern_result(metadata_path, pattern):
    store = run_summary.open_store(metadata_path)
    by_type = {t.id: t.name for t in store.get_artifact_types()}
    return [a for a in store.get_artifacts() if by_type[a.type_id] == "InferenceResult"
            and f"/BulkInferrer.{pattern}/" in a.uri][0]


def _count(path_pattern):
    files = tf.io.gfile.glob(path_pattern)
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


@pytest.mark.parametrize("pattern", ["ab", "keyed", "sequence"])
def test_template_patterns_account_for_every_example(local_run, pattern):
    metadata_path, _, _ = local_run
    result = _pattern_result(metadata_path, pattern)
    props = result.custom_properties
    examples_in = props["examples_in"].int_value
    assert examples_in > 0 and props["failures"].int_value == 0
    per_model = {m: _count(f"{result.uri}/{m}/prediction_logs-*.gz")
                 for m in ("pytorch", "sklearn")}
    for model, count in per_model.items():
        assert props[f"{model}.predictions"].int_value == count
    if pattern == "sequence":  # every record through both models, in order
        assert per_model == {"pytorch": examples_in, "sklearn": examples_in}
        log = helpers.read_prediction_logs(f"{result.uri}/sklearn/prediction_logs-*.gz")[0]
        enriched = tf.train.Example.FromString(
            log.predict_log.request.inputs["examples"].string_val[0])
        assert "pytorch_output_0" in enriched.features.feature
    else:  # each record to exactly one model, both models used
        assert sum(per_model.values()) == examples_in and min(per_model.values()) > 0


@pytest.mark.parametrize("pattern", ["ab", "keyed"])
def test_pattern_reports_hold_the_figures_of_ml_metadata(local_run, pattern):
    """The run report of each multi-model component, linked from its artifact in ML
    Metadata, shows that artifact's figures, and its comparison adds up to them."""
    from template import models
    from tests import browser

    metadata_path, _, _ = local_run
    props = _pattern_result(metadata_path, pattern).custom_properties
    with open(props["report"].string_value) as f:
        figures = browser.parse(f.read()).figures
    for name in ("examples_in", "predictions", "failures"):
        assert figures[name] == props[name].int_value, name
    for model in ("pytorch", "sklearn"):
        assert figures[f"{model}.predictions"] == props[f"{model}.predictions"].int_value
        assert figures[f"{pattern}.{model}.examples_in"] == \
            props[f"{model}.examples_in"].int_value
    if pattern == "ab":
        assert figures["ab.pytorch.share"] + figures["ab.sklearn.share"] == pytest.approx(1)
    else:
        for model in models.keyed().models:
            assert sum(figures[f"keyed.key.{key}"] for key in model.keys) == \
                props[f"{model.name}.predictions"].int_value


def test_second_run_compares_each_model_with_the_first_and_finds_no_drift(local_run):
    """The per-framework BulkInferrers' baseline is their previous run (ML Metadata); the
    same model on the same data drifts by exactly nothing."""
    metadata_path, _, _ = local_run
    store = run_summary.open_store(metadata_path)
    for framework in ("keras", "pytorch", "sklearn"):
        runs = sorted((a for a in store.get_artifacts_by_type("ExampleAnomalies")
                       if f"/BulkInferrer.{framework}/" in a.uri), key=lambda a: a.id)
        assert len(runs) == 2, framework
        first, second = (a.custom_properties for a in runs)
        assert first["drift_verdict"].string_value == "no_baseline"
        assert second["drift_verdict"].string_value == "ok", framework
        assert f"/BulkInferrer.{framework}/prediction_statistics/" in \
            second["drift_baseline"].string_value
        drifts = [p.double_value for key, p in second.items() if key.endswith(".drift")]
        assert drifts and all(value == 0.0 for value in drifts), (framework, drifts)
