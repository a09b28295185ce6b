"""Rows of predictions: typed by their spec, their BigQuery schema explicit, JSON-ready."""
import json

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.io.gcp import bigquery_tools
from tensorflow_serving.apis import prediction_log_pb2

from inference import streaming
from inference.data.results import ChunkResult
from inference.io import rows
from tests import helpers


def test_bigquery_sink_has_the_explicit_table_schema():
    spec = rows.RowSpec.parse("fare,trip_miles:FLOAT,company:STRING,hours:ARRAY<INTEGER>",
                              "output_0:FLOAT,embedding:ARRAY")
    schema = spec.bigquery_schema()  # a bigquery.TableSchema, as in Beam's examples
    sink = streaming.bigquery_sink("my-project:dataset.predictions", spec)
    assert type(schema).__name__ == "TableSchema"
    # WriteToBigQuery keeps the schema as its dict form.
    assert sink.schema == bigquery_tools.get_dict_table_schema(schema)
    fields = [(f["name"], f["type"], f["mode"]) for f in sink.schema["fields"]]
    assert fields == [("model", "STRING", "REQUIRED"), ("event_time", "TIMESTAMP", "NULLABLE"),
                      ("fare", "FLOAT", "NULLABLE"), ("trip_miles", "FLOAT", "NULLABLE"),
                      ("company", "STRING", "NULLABLE"), ("hours", "INTEGER", "REPEATED"),
                      ("output_0", "FLOAT", "NULLABLE"), ("embedding", "FLOAT", "REPEATED")]
    assert sink.table_reference.datasetId == "dataset"
    assert sink.create_disposition == "CREATE_IF_NEEDED"
    with pytest.raises(rows.RowError, match="not declared"):
        rows.RowSpec.parse("fare").bigquery_schema()


def test_rows_are_typed_by_the_spec():
    record = helpers.example({"fare": [12.5], "company": ["Flash"], "hours": [1, 2]})
    spec = rows.RowSpec.parse("fare,company:STRING,hours:ARRAY<INTEGER>,missing",
                              "output_0:FLOAT,embedding:ARRAY")
    result = ChunkResult("m", 1.5, [record], {
        "output_0": np.array([[0.25]], np.float32),
        "embedding": np.array([[[1, 2], [3, 4]]], np.float32)}, [])
    [row] = spec.to_rows(result, timestamp=1.5)
    assert row == {"model": "m", "event_time": "1970-01-01T00:00:01.500000Z", "fare": 12.5,
                   "company": "Flash", "hours": [1, 2], "missing": None, "output_0": 0.25,
                   "embedding": [1.0, 2.0, 3.0, 4.0]}
    assert json.loads(rows.to_json({**row, "output_0": float("nan")}))["output_0"] is None
    with pytest.raises(rows.RowError, match="ARRAY"):
        rows.RowSpec.parse("", "embedding:FLOAT").to_rows(result)

    log = prediction_log_pb2.PredictionLog()  # a TensorFlow model's own log
    log.predict_log.response.outputs["outputs"].CopyFrom(
        tf.make_tensor_proto(np.array([[0.75]], np.float32)))
    [row] = rows.RowSpec(time_field=None).to_rows(ChunkResult(
        "tf", None, [record], {}, [], prediction_logs=[log.SerializeToString()]))
    assert row == {"model": "tf", "outputs": 0.75}
