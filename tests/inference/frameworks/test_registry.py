"""The framework registry (`inference.config.FRAMEWORKS`, `inference/frameworks/__init__.py`):
lookup, the declarations, the BeamHandler adapter turning any Beam ModelHandler into load +
predict, and import paths."""
import subprocess
import sys

import numpy as np
import pytest
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from inference import config, frameworks
from inference.config import ConfigError, InferenceConfig, ModelConfig


class _Doubler(ModelHandler):
    def load_model(self):
        return 2.0

    def run_inference(self, batch, model, inference_args=None):
        return [PredictionResult(x, {"double": np.asarray(x) * model}) for x in batch]


class _Short(_Doubler):
    def run_inference(self, batch, model, inference_args=None):
        return super().run_inference(batch, model)[:-1]


def test_a_beam_handler_becomes_load_and_predict_with_columns():
    loaded = frameworks.BeamHandler.load(_Doubler())
    assert loaded.model == 2.0
    outputs = loaded.predict(frameworks.numpy_rows(np.float32([[1, 2], [3, 4]])))
    assert outputs["double"].tolist() == [[2, 4], [6, 8]]
    with pytest.raises(ValueError, match="returned 1 results for 2 examples"):
        frameworks.BeamHandler.load(_Short()).predict([1.0, 2.0])


def test_rows_of_a_stacked_array_and_of_named_columns():
    stacked = np.arange(6).reshape(3, 2)
    assert [row.tolist() for row in frameworks.numpy_rows(stacked)] == [[0, 1], [2, 3], [4, 5]]
    named = {"a": np.arange(3), "b": np.arange(3) * 2}
    assert [{k: int(v) for k, v in row.items()} for row in frameworks.numpy_rows(named)] == [
        {"a": 0, "b": 0}, {"a": 1, "b": 2}, {"a": 2, "b": 4}]


def test_frameworks_are_looked_up_by_name_and_say_what_they_take():
    assert frameworks.takes_records(frameworks.get("tensorflow"), ModelConfig())
    assert not frameworks.takes_records(frameworks.get("onnx"), ModelConfig())
    assert frameworks.takes_records(frameworks.get("custom"),
                                    ModelConfig(options={"raw_records": True}))
    with pytest.raises(ConfigError, match="no framework 'caffe'"):
        frameworks.get("caffe")


def test_import_paths_name_the_option_when_they_fail(tmp_path):
    assert frameworks.import_object("numpy.float32") is np.float32
    assert frameworks.import_object("numpy:float32") is np.float32
    module = tmp_path / "mine.py"
    module.write_text("def fn():\n    return 42\n")
    assert frameworks.import_object(f"{module}:fn")() == 42
    with pytest.raises(ConfigError, match=r"options.model_class='numpy.nope'"):
        frameworks.import_object("numpy.nope", "options.model_class")
    with pytest.raises(ConfigError, match="defines no 'other'"):
        frameworks.import_object(f"{module}:other")


def test_every_registered_framework_declares_what_it_is():
    declared = dict(frameworks.declarations())
    assert list(declared) == list(config.FRAMEWORKS)
    assert all(isinstance(d, frameworks.Framework) for d in declared.values())
    # A file ending belongs to one framework, so detection by name is unambiguous.
    endings = [suffix for d in declared.values() for suffix in d.suffixes]
    assert len(endings) == len(set(endings)), endings
    assert [n for n, d in declared.items() if not d.reads_files] == ["remote"]


def test_an_unregistered_module_and_a_module_without_a_declaration_are_refused(monkeypatch):
    monkeypatch.setitem(config.FRAMEWORKS, "plain", "inference.data.columns")
    with pytest.raises(ConfigError, match=r"inference.data.columns declares no FRAMEWORK"):
        frameworks.get("plain")
    with pytest.raises(ConfigError, match=r"framework='caffe': choose one of \('tensorflow'"):
        InferenceConfig(models=[ModelConfig(name="m", uri="/m", framework="caffe")]).validate()


def test_reading_every_declaration_imports_no_framework_library():
    """Detection reads every declaration: a run must not import every framework's library."""
    libraries = ("tensorflow", "keras", "sklearn", "onnxruntime", "xgboost", "transformers",
                 "tensorrt")
    code = ("import sys\n"
            "from inference import frameworks\n"
            "frameworks.declarations()\n"
            f"print([m for m in {libraries!r} if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
