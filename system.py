"""Artifact classes under KFP's `system.` type names, importable by those names.

TFX's Vertex AI entry point imports a custom artifact's class from its type name
(`<module>.<class>`), so a type named `system.HTML`, the one the Vertex AI Pipelines
console opens, needs a top-level module `system` holding a class `HTML`.
"""
from components.bulk_inferrer.spec import HTML

__all__ = ["HTML"]
