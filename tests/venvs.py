"""Virtualenvs of their own for the tools whose pins clash with TFX's: MLServer (the
remote-model tests and benchmark) and Ray (the Ray Data benchmark case).

Each is built with the project's uv from a hash-pinned lock and a given interpreter, and
rebuilt when the lock changes; `make env` never builds them.
"""
import hashlib
import os
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
UV = PROJECT / ".venv" / "bin" / "uv"


class Unavailable(RuntimeError):
    """What is needed cannot be installed or started here; the message says why."""


def _digest(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def installed(venv: Path, lock: Path) -> bool:
    """Whether `venv` holds what `lock` pins (as last installed)."""
    stamp = venv / ".installed"
    return stamp.exists() and stamp.read_text() == _digest(lock)


def install(venv: Path, lock: Path, python: str, timeout: float) -> Path:
    """`venv`'s Python, after installing `lock` there with the interpreter `python`,
    unless it holds it already. Raises Unavailable with the command that failed."""
    if installed(venv, lock):
        return venv / "bin" / "python"
    if not UV.exists():
        raise Unavailable(f"no uv at {UV}: run `make env` first")
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    for command in ([str(UV), "venv", "-q", "--allow-existing", "--python", python, str(venv)],
                    [str(UV), "pip", "sync", "-q", "--python", str(venv / "bin" / "python"),
                     str(lock)]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{' '.join(command)} took over {timeout} s") from None
        if done.returncode:
            raise Unavailable(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")
    (venv / ".installed").write_text(_digest(lock))
    return venv / "bin" / "python"
