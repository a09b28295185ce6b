"""Any Beam ModelHandler, named by import path, through the executor."""
import os

import numpy as np
import pytest
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from inference.config import ConfigError, InputSpec, ModelConfig
from inference.engine.models import create_handler
from tests.inference.frameworks.common import FEATURES, _assert_equal, _run

# --- custom Beam ModelHandler ------------------------------------------------------------------

class Scale:
    """The 'model': a factor. (Beam keeps a weak reference to a loaded model, so it must be
    an object that allows one: not a float, tuple or dict.)"""

    def __init__(self, factor: float):
        self.factor = factor


class ScaleHandler(ModelHandler):
    """A tiny Beam ModelHandler: its model is a factor read from a file."""

    def __init__(self, model_uri=None, offset=0.0):
        super().__init__()
        self._uri, self._offset = model_uri, offset

    def load_model(self):
        with open(os.path.join(self._uri, "factor.txt")) as f:
            return Scale(float(f.read()))

    def run_inference(self, batch, model, inference_args=None):
        for element in batch:
            if isinstance(element, bytes):  # raw records
                value = np.float32(len(element))
            elif isinstance(element, dict):
                value = sum(np.asarray(v, np.float32) for v in element.values())
            else:
                value = np.asarray(element, np.float32)
            yield PredictionResult(element,
                                   (value * model.factor + self._offset).astype(np.float32))


def test_custom_handler(tmp_path, tmp_path_factory, tabular):
    folder = str(tmp_path_factory.mktemp("custom"))
    with open(os.path.join(folder, "factor.txt"), "w") as f:
        f.write("2.0")
    options = {"handler": f"{__name__}.ScaleHandler", "handler_args": {"offset": 0.5},
               "path_arg": "model_uri"}
    results = _run(tmp_path, tabular, [
        ModelConfig(name="rows", framework="custom", uri=folder,
                    inputs=InputSpec(features=FEATURES), options=options),
        ModelConfig(name="dicts", framework="custom", uri=folder,
                    inputs=InputSpec(features=["f0", "f1"], layout="dict"), options=options),
        ModelConfig(name="raw", framework="custom", uri=folder,
                    options={**options, "raw_records": True}),
    ])
    x = tabular.x
    _assert_equal(results["rows"], {"output_0": x * 2 + 0.5})
    _assert_equal(results["dicts"], {"output_0": (x[:, :1] + x[:, 1:2]) * 2 + 0.5})
    records = sorted(tabular.index, key=tabular.index.get)
    _assert_equal(results["raw"], {"output_0": [len(r) * 2 + 0.5 for r in records]})


def test_custom_needs_a_model_handler(tmp_path):
    with pytest.raises(ConfigError, match="not an apache_beam ModelHandler"):
        create_handler(ModelConfig(framework="custom", options={"handler": "builtins.dict"}),
                       str(tmp_path))
    with pytest.raises(ConfigError, match="needs options.handler"):
        create_handler(ModelConfig(framework="custom"), str(tmp_path))
