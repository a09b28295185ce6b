"""TFX components of this project: glue between artifacts and the `inference` engine."""
__all__ = ["BulkInferrer"]


def __getattr__(name):
    # `from components import BulkInferrer` imports TFX and TensorFlow only when asked,
    # so the console (components.console) can capture their logs before they load.
    if name == "BulkInferrer":
        from components.bulk_inferrer.component import BulkInferrer  # pylint: disable=import-outside-toplevel
        return BulkInferrer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
