"""PredictionRows: a BulkInferrer's PredictionLogs as typed rows (Parquet, BigQuery)."""
