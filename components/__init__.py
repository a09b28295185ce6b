"""TFX components of this project: glue between artifacts and the `inference` engine."""
import importlib

__all__ = ["BulkInferrer", "image_example_gen"]
_WHERE = {"BulkInferrer": "components.bulk_inferrer.component",
          "image_example_gen": "components.image_examples"}


def __getattr__(name):
    # `from components import BulkInferrer` imports TFX and TensorFlow only when asked,
    # so the console (components.console) can capture their logs before they load.
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
