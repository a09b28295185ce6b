"""The baseline of a scheduled run is the last successful run of the same BulkInferrer in
the same pipeline, resolved in ML Metadata by LocalDagRunner: three runs of a pipeline
that imports taxi trips and a model (the first, one whose fares are multiplied by 3 and
fails the gate, one on the first's data)."""
import os

import pytest
from tfx import v1 as tfx
from tfx.types import standard_artifacts

from components import BulkInferrer, run_summary
from components.bulk_inferrer import drift
from inference.observe.drift import DriftConfig
from template import config
from tests.components import test_drift

ID = "BulkInferrer.taxi"


def _pipeline(root, examples_uri: str, model_uri: str) -> tfx.dsl.Pipeline:
    examples = tfx.dsl.Importer(source_uri=examples_uri,
                                artifact_type=standard_artifacts.Examples,
                                properties={"split_names": '["eval"]'}).with_id("Trips")
    model = tfx.dsl.Importer(source_uri=model_uri,
                             artifact_type=standard_artifacts.Model).with_id("Model")
    inferrer = BulkInferrer(examples=examples.outputs["result"],
                            model=model.outputs["result"],
                            baseline=drift.previous_run(ID),
                            drift_config=DriftConfig(action="fail")).with_id(ID)
    return tfx.dsl.Pipeline(
        pipeline_name="drift", pipeline_root=str(root / "pipeline_root"),
        components=[examples, model, inferrer], beam_pipeline_args=config.LOCAL_BEAM_PIPELINE_ARGS,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.db")))


def _latest(root, type_name: str):
    store = run_summary.open_store(str(root / "metadata.db"))
    kind = store.get_artifact_type(type_name)
    return max(store.get_artifacts_by_type(kind.name), key=lambda a: a.id)


def test_the_baseline_is_the_last_successful_run(tmp_path):
    trips = test_drift._examples(str(tmp_path / "trips"))
    fares_x3 = test_drift._examples(str(tmp_path / "fares_x3"), 3.0)
    model = test_drift._model(str(tmp_path / "model"), [0.1, 0.05, 0.0005])
    runner = tfx.orchestration.LocalDagRunner()

    runner.run(_pipeline(tmp_path, trips.uri, model.uri))
    first = _latest(tmp_path, "ExampleAnomalies")
    assert first.custom_properties["drift_verdict"].string_value == "no_baseline"
    first_stats = _latest(tmp_path, "ExampleStatistics")

    with pytest.raises(Exception, match=f"{test_drift.SCORE} Jensen-Shannon divergence"):
        runner.run(_pipeline(tmp_path, fares_x3.uri, model.uri))
    # ML Metadata publishes no output of the failed run (TFX's launcher removes their
    # folders), so the next run's baseline is still the first run's statistics.
    assert _latest(tmp_path, "ExampleAnomalies").id == first.id

    runner.run(_pipeline(tmp_path, trips.uri, model.uri))
    third = _latest(tmp_path, "ExampleAnomalies")
    assert third.custom_properties["drift_verdict"].string_value == "ok"
    assert third.custom_properties["drift_baseline"].string_value == first_stats.uri
    assert third.custom_properties[f"{test_drift.SCORE}.drift"].double_value == 0.0
    assert os.path.exists(os.path.join(third.uri, "Split-eval", "SchemaDiff.pb"))
