"""Keras files and SavedModels on dense tensors through the executor."""
import os

import pytest

from inference import frameworks
from inference.config import ConfigError, InputSpec, ModelConfig
from inference.frameworks import detection
from tests.inference.frameworks.common import FEATURES, _assert_equal, _run


def test_keras_file_and_saved_model(tmp_path, tmp_path_factory, tabular):
    import keras
    keras.utils.set_random_seed(0)
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                   keras.layers.Dense(2)])
    f0, f2 = keras.Input((1,), name="f0"), keras.Input((1,), name="f2")
    functional = keras.Model({"f0": f0, "f2": f2},
                             keras.layers.Dense(3)(keras.layers.Concatenate()([f0, f2])))
    root = str(tmp_path_factory.mktemp("keras"))
    paths = {"file": f"{root}/file/model.keras", "saved_model": f"{root}/saved_model",
             "dict_file": f"{root}/dict_file/model.keras", "dict_saved_model": f"{root}/dsm"}
    for key in ("file", "dict_file"):
        os.makedirs(os.path.dirname(paths[key]))
    sequential.save(paths["file"])
    sequential.export(paths["saved_model"])
    functional.save(paths["dict_file"])
    functional.export(paths["dict_saved_model"])
    assert detection.resolve(os.path.dirname(paths["file"])) == ("keras", paths["file"])
    assert detection.resolve(paths["saved_model"]) == ("keras", paths["saved_model"])
    # Set explicitly, a folder holding a .keras file resolves to the file.
    assert detection.resolve(os.path.dirname(paths["file"]), "keras")[1] == paths["file"]

    stacked, keyed = InputSpec(features=FEATURES), InputSpec(features=["f0", "f2"],
                                                             layout="dict")
    results = _run(tmp_path, tabular, [
        ModelConfig(name="file", uri=paths["file"], inputs=stacked),
        ModelConfig(name="saved_model", uri=paths["saved_model"], inputs=stacked),
        ModelConfig(name="dict_file", uri=paths["dict_file"], inputs=keyed),
        ModelConfig(name="dict_saved_model", uri=paths["dict_saved_model"], inputs=keyed,
                    options={"signature_name": "serving_default"}),
    ])
    x = tabular.x
    expected = {"output_0": sequential(x).numpy()}
    _assert_equal(results["file"], expected)
    _assert_equal(results["saved_model"], expected)
    expected = {"output_0": functional({"f0": x[:, :1], "f2": x[:, 2:3]}).numpy()}
    _assert_equal(results["dict_file"], expected)
    _assert_equal(results["dict_saved_model"], expected)


def test_keras_saved_model_signature_mismatch_is_clear(tmp_path, tabular):
    import keras
    f0, f2 = keras.Input((1,), name="f0"), keras.Input((1,), name="f2")
    keras.Model({"f0": f0, "f2": f2}, keras.layers.Add()([f0, f2])).export(str(tmp_path / "sm"))
    spec = ModelConfig(framework="keras", inputs=InputSpec(features=FEATURES))
    with pytest.raises(ConfigError, match=r"takes \['f0', 'f2'\]: use inputs.layout='dict'"):
        frameworks.get("keras").load(str(tmp_path / "sm"), spec)
