"""PredictionRows: a BulkInferrer's PredictionLogs as typed Parquet rows (and the BigQuery
schema of the same rows)."""
import glob
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from tfx.types import standard_artifacts

from components.prediction_rows import executor, spec
from components.prediction_rows.component import PredictionRows
from inference.data.results import ChunkResult, FilePosition
from inference.io import encoding
from inference.io.rows import RowError, RowSpec
from tests import helpers

FEATURES = "review_id:INTEGER,text:STRING"
OUTPUTS = "embedding:ARRAY<FLOAT>,label:STRING"


def _logs(folder, model, ids):
    """PredictionLogs of `model` for reviews `ids`, as the BulkInferrer writes them."""
    records = [helpers.example({"review_id": [i], "text": [f"review {i}"]}) for i in ids]
    outputs = {"embedding": np.array([[i, i + 0.5] for i in ids], np.float32),
               "label": np.array([b"good" if i % 2 else b"bad" for i in ids], dtype=object)}
    logs = encoding.encode_logs(ChunkResult(model, FilePosition("", 0), records, outputs, []))
    helpers.write_tfrecords(os.path.join(folder, model, "prediction_logs-00000-of-00001.gz"),
                            logs)


def test_prediction_logs_of_every_model_become_typed_parquet_rows(tmp_path):
    logs = str(tmp_path / "inference_result")
    _logs(logs, "a", range(5))
    _logs(logs, "b", range(5, 8))
    inference_result = helpers.output_artifact(standard_artifacts.InferenceResult, logs)
    rows = helpers.output_artifact(spec.PredictionRows, str(tmp_path / "rows"))
    executor.Executor(helpers.beam_context(tmp_path)).Do(
        {spec.INFERENCE_RESULT_KEY: [inference_result]}, {spec.ROWS_KEY: [rows]},
        {spec.FEATURES_KEY: FEATURES, spec.OUTPUTS_KEY: OUTPUTS})

    files = glob.glob(f"{rows.uri}/rows-*.parquet")
    table = pq.ParquetDataset(files).read()
    assert table.schema.names == ["model", "review_id", "text", "embedding", "label"]
    assert str(table.schema.field("embedding").type) == "list<item: double>"
    got = sorted(table.to_pylist(), key=lambda row: row["review_id"])
    assert got == [{"model": "a" if i < 5 else "b", "review_id": i, "text": f"review {i}",
                    "embedding": [float(i), i + 0.5], "label": "good" if i % 2 else "bad"}
                   for i in range(8)]


def test_the_bigquery_schema_matches_the_rows():
    row_spec = RowSpec.parse(FEATURES, OUTPUTS)
    row_spec.time_field = None
    fields = [(f.name, f.type, f.mode) for f in row_spec.bigquery_schema().fields]
    assert fields == [("model", "STRING", "REQUIRED"), ("review_id", "INTEGER", "NULLABLE"),
                      ("text", "STRING", "NULLABLE"), ("embedding", "FLOAT", "REPEATED"),
                      ("label", "STRING", "NULLABLE")]
    assert row_spec.arrow_schema().names == [name for name, _, _ in fields]


def test_a_bad_row_layout_fails_where_the_pipeline_is_defined():
    with pytest.raises(ValueError, match="bad field"):
        PredictionRows(inference_result=None, outputs="embedding:ARRAY<FLOAT")
    with pytest.raises(RowError, match="declared twice"):
        PredictionRows(inference_result=None, outputs="text:STRING", features="text:STRING")
