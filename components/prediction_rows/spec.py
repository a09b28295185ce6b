"""PredictionRows' parameter, input and output names, its artifact and ComponentSpec."""
from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

# Inputs.
INFERENCE_RESULT_KEY = "inference_result"
# Parameters: the row layout (`inference.io.rows.RowSpec.parse`: comma-separated fields, e.g.
# "review_id:INTEGER,text:STRING" and "embedding:ARRAY<FLOAT>"), and a BigQuery table
# ("project:dataset.table") the rows are also loaded into, with the matching schema.
FEATURES_KEY = "features"
OUTPUTS_KEY = "outputs"
BIGQUERY_TABLE_KEY = "bigquery_table"
# Outputs.
ROWS_KEY = "rows"

ROWS_FILE_NAME = "rows"  # <uri>/rows-SSSSS-of-NNNNN.parquet


class PredictionRows(artifact.Artifact):
    """Predictions as typed rows: Parquet files `<uri>/rows-*.parquet`, one row per
    prediction (model, the selected features, the typed outputs)."""
    TYPE_NAME = "tfx_runinference.PredictionRows"


class PredictionRowsSpec(ComponentSpec):
    PARAMETERS = {
        FEATURES_KEY: ExecutionParameter(type=str, optional=True),
        OUTPUTS_KEY: ExecutionParameter(type=str),
        BIGQUERY_TABLE_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        INFERENCE_RESULT_KEY: ChannelParameter(type=standard_artifacts.InferenceResult),
    }
    OUTPUTS = {
        ROWS_KEY: ChannelParameter(type=PredictionRows),
    }
