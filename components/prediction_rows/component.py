"""The PredictionRows component: PredictionLogs in, typed rows out (Parquet, BigQuery)."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec

from components.prediction_rows import executor, spec
from inference.io.rows import RowSpec


class PredictionRows(base_beam_component.BaseBeamComponent):
    """A BulkInferrer's PredictionLogs as typed rows, as a warehouse table takes them.

    Each row: `model`, the `features` copied from the input example, the model's
    `outputs` typed (e.g. "embedding:ARRAY<FLOAT>", "label:STRING,score:FLOAT"; see
    `inference.io.rows.RowSpec.parse`). Written as Parquet files (the `rows` output), and
    with `bigquery_table` ("project:dataset.table") also loaded into BigQuery with the
    explicit schema `RowSpec.bigquery_schema()` gives.

    Example:
      rows = PredictionRows(inference_result=inferrer.outputs["inference_result"],
                            features="review_id:INTEGER,text:STRING",
                            outputs="embedding:ARRAY<FLOAT>")
    """

    SPEC_CLASS = spec.PredictionRowsSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, inference_result: types.BaseChannel, outputs: str, features: str = "",
                 bigquery_table: Optional[str] = None):
        RowSpec.parse(features, outputs).fields()  # a bad field fails here, not in the run
        super().__init__(spec=spec.PredictionRowsSpec(
            inference_result=inference_result, features=features, outputs=outputs,
            bigquery_table=bigquery_table,
            rows=types.Channel(type=spec.PredictionRows)))
