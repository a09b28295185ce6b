"""TFX's own BulkInferrer tests, run against this component and executor.

The test modules are TFX 1.16's, loaded from the installed `tfx` package at test time (not
copied): each is loaded afresh, its module under test (`executor`, `component`) is
rebound to ours, and its TestCase runs as TFX wrote it, assertions unchanged, on TFX's own
testdata (`tfx/components/testdata/`: a classify SavedModel, CSV-derived examples).
"""
import importlib.util
import os
import types

from tfx.components import bulk_inferrer as tfx_bulk_inferrer

from components.bulk_inferrer import component, executor


def _tfx_test_module(name: str, **ours: types.ModuleType) -> types.ModuleType:
    """TFX's test module `tfx.components.bulk_inferrer.<name>`, loaded as a new module
    (TFX's stays untouched), with each module it tests replaced by ours."""
    path = os.path.join(os.path.dirname(tfx_bulk_inferrer.__file__), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"tfx_suite_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for attribute, replacement in ours.items():
        tested = getattr(module, attribute)
        assert tested.__name__ == f"tfx.components.bulk_inferrer.{attribute}", tested
        setattr(module, attribute, replacement)
    return module


TfxExecutorTest = _tfx_test_module("executor_test", executor=executor).ExecutorTest
TfxComponentTest = _tfx_test_module("component_test", component=component).ComponentTest
