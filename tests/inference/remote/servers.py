"""Real model servers for the remote-model tests and the benchmark, on 127.0.0.1 only:
MLServer with its scikit-learn runtime, and KServe's own `ModelServer` (the `kserve`
package) serving a logistic regression (`kserve_model.py`), on V1 and V2 REST.

Their pins clash with TFX's, so each lives in a virtualenv of its own (`.venv-mlserver/`,
`.venv-kserve/`), installed with uv from a hash-pinned lock beside this file (made with
`uv pip compile --generate-hashes` from the `.in` file) and Python 3.11. Every wait is
bounded; a machine where a server cannot be installed gets `Unavailable`, with the reason.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Sequence

import requests

from tests import processes, venvs
from tests.processes import free_port
from tests.venvs import Unavailable

HERE = Path(__file__).resolve().parent
INSTALL_TIMEOUT_SECS = 900
START_TIMEOUT_SECS = 120


def python311() -> Optional[str]:
    """A Python 3.11 interpreter (the locks'), from pyenv or PATH."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3.11")))
    return found[-1] if found else shutil.which("python3.11")


def install(name: str) -> Path:
    """`.venv-<name>/bin/`, installing `requirements-<name>.lock` first when it changed."""
    venv, lock = venvs.PROJECT / f".venv-{name}", HERE / f"requirements-{name}.lock"
    if not venvs.installed(venv, lock):
        python = python311()
        if not python:
            raise Unavailable(f"no Python 3.11 (pyenv or PATH) for {name}'s virtualenv")
        venvs.install(venv, lock, python, INSTALL_TIMEOUT_SECS)
    return venv / "bin"


class ServerProcess:
    """A model server in a process group of its own, on a free loopback port, ready once
    `GET <model_url>/ready` answers 200. Use as a context manager, or `start()` /
    `stop()`; `kill()` ends it as a crash would."""

    protocol = "v2"

    def __init__(self, folder: Path, model_name: str):
        self.folder = folder
        self.model_name = model_name
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None
        self.log = folder / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def model_url(self) -> str:
        return f"{self.url}/v2/models/{self.model_name}"

    def command(self) -> List[str]:
        raise NotImplementedError

    def start(self) -> "ServerProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))}
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True)
        name = type(self).__name__
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(f"{name} exited ({self.process.returncode}): "
                                  f"{self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/v2/models/{self.model_name}/ready",
                                timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise Unavailable(f"{name} was not ready within {START_TIMEOUT_SECS} s: "
                          f"{self.log.read_text()[-2000:]}")

    def kill(self):
        """Kills the server at once (SIGKILL), as a crash would."""
        processes.signal_group(self.process, signal.SIGKILL)

    def stop(self):
        processes.signal_group(self.process)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class MLServer(ServerProcess):
    """`mlserver start` on a model repository serving the scikit-learn model
    `joblib_file` as `model_name` (V2 REST)."""

    def __init__(self, folder: Path, model_name: str, joblib_file: Path, bin_dir: Path):
        super().__init__(folder, model_name)
        model_dir = folder / model_name
        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(joblib_file, model_dir / "model.joblib")
        (model_dir / "model-settings.json").write_text(json.dumps({
            "name": model_name, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"}}))
        self._mlserver = bin_dir / "mlserver"

    def command(self) -> List[str]:
        (self.folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": self.port, "grpc_port": free_port(),
            "metrics_port": free_port(), "parallel_workers": 0, "debug": False}))
        return [str(self._mlserver), "start", str(self.folder)]


class KServe(ServerProcess):
    """KServe's `ModelServer` serving a binary logistic regression (coefficients and
    intercept of a fitted scikit-learn model) as `model_name`, on V1 and V2 REST at once.

    protocol: the one `model_url` names, "v2" (`/v2/models/<name>`) or "kserve-v1"
      (`/v1/models/<name>`).
    faults: `kserve_model.py`'s fault flags, e.g. ["--fail_every", "5"]."""

    def __init__(self, folder: Path, model_name: str, estimator, bin_dir: Path,
                 protocol: str = "v2", faults: Sequence[str] = ()):
        super().__init__(folder, model_name)
        self.protocol = protocol
        self._faults = list(faults)
        self._coefficients = folder / "coefficients.json"
        folder.mkdir(parents=True, exist_ok=True)
        self._coefficients.write_text(json.dumps({
            "coef": estimator.coef_.tolist(), "intercept": estimator.intercept_.tolist()}))
        self._python = bin_dir / "python"

    @property
    def model_url(self) -> str:
        version = "v1" if self.protocol == "kserve-v1" else "v2"
        return f"{self.url}/{version}/models/{self.model_name}"

    def command(self) -> List[str]:
        return [str(self._python), str(HERE / "kserve_model.py"), "--model_name",
                self.model_name, "--coefficients", str(self._coefficients),
                "--http_port", str(self.port), "--enable_grpc", "false",
                "--enable_latency_logging", "false", *self._faults]
