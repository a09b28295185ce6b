"""This project's artifact classes under their type names' namespace, `tfx_runinference`:
TFX's Vertex AI entry point imports a custom artifact's class from its type name."""
from components.bulk_inferrer.spec import InferenceFailures

__all__ = ["InferenceFailures"]
