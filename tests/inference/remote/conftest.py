"""Real model servers for the remote-model tests, on 127.0.0.1: MLServer serving a
scikit-learn model built here, and KServe's own ModelServer serving the same model.
Installed on first use (see `servers`); where one cannot be, the tests that need it are
skipped with the reason."""
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests import helpers
from tests.inference.remote import servers

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


def _install(name: str):
    try:
        return servers.install(name)
    except servers.Unavailable as e:
        pytest.skip(f"{name} cannot be installed here: {e}")


def start(server: servers.ServerProcess) -> servers.ServerProcess:
    try:
        return server.start()
    except servers.Unavailable as e:
        pytest.skip(f"{type(server).__name__} does not start here: {e}")


@pytest.fixture(scope="session")
def mlserver_bin():
    return _install("mlserver")


@pytest.fixture(scope="session")
def kserve_bin():
    return _install("kserve")


@pytest.fixture(scope="session")
def model_server(tmp_path_factory, taxi_model, mlserver_bin):
    """MLServer for the whole session (tests that kill theirs use `fresh_server`)."""
    server = start(servers.MLServer(tmp_path_factory.mktemp("mlserver"), MODEL_NAME,
                                    taxi_model.path, mlserver_bin))
    yield server
    server.stop()


@pytest.fixture(params=["mlserver", "kserve"])
def fresh_server(request, tmp_path, taxi_model):
    """A server of the test's own, MLServer or KServe (V2 REST), to kill or stop."""
    bin_dir = request.getfixturevalue(f"{request.param}_bin")
    server = (servers.MLServer(tmp_path / "mlserver", MODEL_NAME, taxi_model.path, bin_dir)
              if request.param == "mlserver" else
              servers.KServe(tmp_path / "kserve", MODEL_NAME, taxi_model.estimator, bin_dir))
    yield start(server)
    server.stop()
