"""scikit-learn through the executor: joblib (trusted), pickle needs trust, skops."""
import importlib.util
import os

import joblib
import pytest

from components.bulk_inferrer import spec
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.engine.models import create_handler
from inference.frameworks import detection
from tests import helpers
from tests.inference.frameworks.common import FEATURES, _assert_equal, _run, _serving


def test_sklearn_joblib(tmp_path, tmp_path_factory, tabular, logistic):
    artifact, folder = _serving(tmp_path_factory, "sklearn")
    joblib.dump(logistic, os.path.join(folder, "model.joblib"))
    assert detection.resolve(folder) == ("sklearn", os.path.join(folder, "model.joblib"))
    inputs = InputSpec(features=FEATURES)
    results = _run(tmp_path, tabular, [
        ModelConfig(name="label", inputs=inputs, options={"trusted": True}),
        ModelConfig(name="proba", inputs=inputs,
                    options={"trusted": True, "method": "predict_proba"}),
    ], artifact)
    _assert_equal(results["label"], {"output_0": logistic.predict(tabular.x)})
    _assert_equal(results["proba"], {"output_0": logistic.predict_proba(tabular.x)})


@pytest.mark.parametrize("file_name", ["model.joblib", "model.pkl"])
def test_sklearn_pickle_needs_trust(tmp_path, tabular, logistic, file_name):
    path = str(tmp_path / file_name)
    joblib.dump(logistic, path)
    model = ModelConfig(uri=path, inputs=InputSpec(features=FEATURES))
    with pytest.raises(ConfigError, match=r"(?s)run whatever code.*'trusted': True.*ONNX"):
        helpers.run_bulk_inferrer(tmp_path, {spec.EXAMPLES_KEY: [tabular.examples]},
                                  InferenceConfig(models=[model]))
    with pytest.raises(ConfigError, match="trusted"):
        # Only True itself opts in.
        create_handler(ModelConfig(framework="sklearn", inputs=InputSpec(features=FEATURES),
                                   options={"trusted": "yes"}), path)


def test_sklearn_skops_needs_the_package(tmp_path):
    if importlib.util.find_spec("skops") is not None:
        pytest.skip("skops is installed")
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK")
    assert detection.resolve(str(path))[0] == "sklearn"
    with pytest.raises(ConfigError, match="install the `skops` package"):
        create_handler(ModelConfig(framework="sklearn", inputs=InputSpec(features=FEATURES)),
                       str(path))
