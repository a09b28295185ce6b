"""A real model server for the remote-model tests: MLServer serving a scikit-learn model
built here, on 127.0.0.1. Installed on first use (see `mlserver`); where it cannot be,
the tests that need it are skipped with the reason."""
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests import helpers
from tests.inference.remote import mlserver

FEATURES = ["fare", "trip_miles", "trip_seconds", "hour"]
MODEL_NAME = "taxi"


class TaxiModel:
    """The test's model, its data (records as tf.Examples), and its predictions computed
    locally with scikit-learn."""

    def __init__(self, folder, n=300, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
        y = (x @ np.array([1.5, -2.0, 0.5, 1.0]) + 0.3 * rng.normal(size=n) > 0).astype(int)
        self.estimator = LogisticRegression().fit(x, y)
        self.path = folder / "model.joblib"
        joblib.dump(self.estimator, self.path)
        self.records = helpers.float_examples(x, FEATURES)
        self.expected = dict(zip(self.records, self.estimator.predict_proba(x)))


@pytest.fixture(scope="session")
def taxi_model(tmp_path_factory):
    return TaxiModel(tmp_path_factory.mktemp("taxi_model"))


@pytest.fixture(scope="session")
def mlserver_exe():
    try:
        return mlserver.install()
    except mlserver.Unavailable as e:
        pytest.skip(f"MLServer cannot be installed here: {e}")


def start_server(folder, taxi_model, mlserver_exe) -> mlserver.MLServer:
    repository = mlserver.model_repository(folder, MODEL_NAME, taxi_model.path)
    try:
        return mlserver.MLServer(repository, MODEL_NAME, mlserver_exe).start()
    except mlserver.Unavailable as e:
        pytest.skip(f"MLServer does not start here: {e}")


@pytest.fixture(scope="session")
def model_server(tmp_path_factory, taxi_model, mlserver_exe):
    """MLServer for the whole session (tests that kill theirs use `fresh_server`)."""
    server = start_server(tmp_path_factory.mktemp("mlserver"), taxi_model, mlserver_exe)
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path, taxi_model, mlserver_exe):
    server = start_server(tmp_path / "mlserver", taxi_model, mlserver_exe)
    yield server
    server.stop()
