"""Which framework a model's files belong to, from their names and headers alone."""
import json
import zipfile

import pytest

from inference.config import ConfigError
from inference.frameworks import detection
from tests import helpers


def test_detection_from_files(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "xgb.json").write_text(json.dumps({"learner": {}}))
    (tmp_path / "not_xgb.json").write_text("{}")
    with zipfile.ZipFile(tmp_path / "model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    assert detection.resolve(str(tmp_path / "m.onnx")) == ("onnx", str(tmp_path / "m.onnx"))
    assert detection.resolve(str(tmp_path / "xgb.json"))[0] == "xgboost"
    assert detection.resolve(str(tmp_path / "model.bin"))[0] == "pytorch"
    with pytest.raises(ConfigError, match="not an xgboost model"):
        detection.resolve(str(tmp_path / "not_xgb.json"))
    with pytest.raises(ConfigError, match="does not exist"):
        detection.resolve(str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="cannot tell which file"):
        detection.resolve(str(tmp_path))


def test_saved_model_signature_decides_tensorflow_or_keras(tmp_path):
    path = helpers.save_example_parsing_model(str(tmp_path / "sm"), ["a"], [1.0])
    assert detection.resolve(path) == ("tensorflow", path)
