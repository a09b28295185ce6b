"""A multi-framework, drop-in superset of TFX's BulkInferrer."""
