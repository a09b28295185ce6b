"""TFX components of this project: glue between artifacts and the `inference` engine."""
from components.bulk_inferrer.component import BulkInferrer
from components.image_example_gen import image_example_gen

__all__ = ["BulkInferrer", "image_example_gen"]
