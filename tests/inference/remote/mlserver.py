"""A real model server for the remote-model tests and the benchmark: MLServer with its
scikit-learn runtime, on 127.0.0.1 only.

MLServer's pins clash with TFX's, so it lives in a virtualenv of its own,
`.venv-mlserver/`, installed with uv from `requirements-mlserver.lock` (hash-pinned; made
with `uv pip compile --generate-hashes` from `requirements-mlserver.in`) and Python 3.11.
Every wait is bounded; a machine where it cannot be installed gets `Unavailable`, with
the reason.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import requests

from tests import venvs
from tests.venvs import Unavailable

HERE = Path(__file__).resolve().parent
LOCK = HERE / "requirements-mlserver.lock"
VENV = venvs.PROJECT / ".venv-mlserver"
INSTALL_TIMEOUT_SECS = 900
START_TIMEOUT_SECS = 120


def python311() -> Optional[str]:
    """A Python 3.11 interpreter (the lock's), from pyenv or PATH."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3.11")))
    return found[-1] if found else shutil.which("python3.11")


def install() -> Path:
    """`.venv-mlserver/bin/mlserver`, installing the lock first when it changed."""
    if not venvs.installed(VENV, LOCK):
        python = python311()
        if not python:
            raise Unavailable("no Python 3.11 (pyenv or PATH) for MLServer's virtualenv")
        venvs.install(VENV, LOCK, python, INSTALL_TIMEOUT_SECS)
    return VENV / "bin" / "mlserver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_repository(folder: Path, name: str, joblib_file: Path) -> Path:
    """A model repository serving the scikit-learn model `joblib_file` as `name`."""
    model_dir = folder / name
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(joblib_file, model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"}}))
    return folder


class MLServer:
    """`mlserver start` on a model repository, on free loopback ports, in a process group
    of its own. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, repository: Path, model_name: str, mlserver: Path):
        self.repository = repository
        self.model_name = model_name
        self._mlserver = mlserver
        self.port = free_port()
        self.process: Optional[subprocess.Popen] = None
        self.log = repository / "mlserver.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def model_url(self) -> str:
        return f"{self.url}/v2/models/{self.model_name}"

    def start(self) -> "MLServer":
        (self.repository / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": self.port, "grpc_port": free_port(),
            "metrics_port": free_port(), "parallel_workers": 0, "debug": False}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(self._mlserver), "start", str(self.repository)], cwd=self.repository,
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(f"mlserver exited ({self.process.returncode}): "
                                  f"{self.log.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.model_url}/ready", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        self.stop()
        raise Unavailable(f"mlserver was not ready within {START_TIMEOUT_SECS} s: "
                          f"{self.log.read_text()[-2000:]}")

    def kill(self):
        """Kills the server at once (SIGKILL), as a crash would."""
        self._signal(signal.SIGKILL)

    def stop(self):
        self._signal(signal.SIGTERM)

    def _signal(self, sig):
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)  # its own group: the server and its children
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
