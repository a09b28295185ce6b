"""TFX components of this project: glue between artifacts and the `inference` engine."""
from components.bulk_inferrer.component import BulkInferrer

__all__ = ["BulkInferrer"]
