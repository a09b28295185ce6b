"""PredictionRows executor: reads the PredictionLogs, writes typed rows."""
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from components.prediction_rows import spec
from inference.data.failures import FAILURES_TAG
from inference.io.records import ReadRecords
from inference.io.rows import RowSpec


class Executor(base_beam_executor.BaseBeamExecutor):
    """PredictionLogs (every model's, as the BulkInferrer lays them out) -> Parquet rows,
    and BigQuery rows when a table is named."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        logs_uri = artifact_utils.get_single_uri(input_dict[spec.INFERENCE_RESULT_KEY])
        rows_uri = artifact_utils.get_single_uri(output_dict[spec.ROWS_KEY])
        row_spec = RowSpec.parse(exec_properties.get(spec.FEATURES_KEY) or "",
                                 exec_properties[spec.OUTPUTS_KEY])
        row_spec.time_field = None  # a bounded run's rows have no event time
        patterns = [os.path.join(logs_uri, "prediction_logs-*"),  # one model
                    os.path.join(logs_uri, "*", "prediction_logs-*")]  # a folder per model
        table = exec_properties.get(spec.BIGQUERY_TABLE_KEY)
        with self._make_beam_pipeline() as pipeline:
            read = pipeline | "ReadPredictionLogs" >> ReadRecords(patterns)
            _ = read[FAILURES_TAG] | "FailOnDamage" >> beam.Map(_unreadable)
            rows = read.main | "ToRows" >> beam.FlatMap(
                lambda chunk: row_spec.from_prediction_logs(chunk[1]))
            _ = rows | "WriteParquet" >> beam.io.WriteToParquet(
                os.path.join(rows_uri, spec.ROWS_FILE_NAME), row_spec.arrow_schema(),
                file_name_suffix=".parquet")
            if table:
                _ = rows | "WriteBigQuery" >> beam.io.WriteToBigQuery(
                    table, schema=row_spec.bigquery_schema(),
                    create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
                    write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND)


def _unreadable(failure):
    """Rows are never dropped quietly: a damaged PredictionLogs file fails the run."""
    raise ValueError(f"cannot read the PredictionLogs at {failure.source}: "
                     f"{failure.message}")
