"""Ray Data as a benchmark case, in a virtualenv of its own.

Ray's pins clash with TFX's, so the case runs `job.py` with the Python of `.venv-ray`
(gitignored), built from `requirements.lock` beside this file (`tests.venvs`) with the
project's own interpreter, Python 3.10, the lock's, before the cases run; `make test`
never builds it. The harness measures the job's process tree (the driver, Ray's daemons
and workers) like any case's.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from benchmarks.clock import Clock
from benchmarks.data import FEATURES, PROJECT_DIR, record_files
from tests import venvs

HERE = Path(__file__).resolve().parent
LOCK = HERE / "requirements.lock"
JOB = HERE / "job.py"
VENV = Path(PROJECT_DIR) / ".venv-ray"
INSTALL_TIMEOUT_SECS = 1800


def ready() -> bool:
    """Whether .venv-ray is built from the current lock."""
    return venvs.installed(VENV, LOCK)


def ensure_venv(python: Optional[str] = None) -> Optional[str]:
    """Builds .venv-ray with `python` (default: the project's interpreter) unless built from
    the lock already (a few minutes the first time: Ray, PyTorch and TensorFlow wheels,
    from uv's cache where the project's venv put them). Returns None, or why it could not
    be built."""
    try:
        venvs.install(VENV, LOCK, python or os.path.realpath(sys.executable),
                      INSTALL_TIMEOUT_SECS)
    except venvs.Unavailable as e:
        return (f"the Ray Data case needs {VENV}, built from {LOCK} with packages from PyPI "
                f"(ray, torch, tensorflow: a few GB), and it could not be built: {e}. Fix "
                f"the cause (network, disk) and run again, or leave the case out (--kinds)")
    return None


def run_case(case: Dict[str, Any]) -> Dict[str, Any]:
    """The case in the Ray venv's Python; its seconds (from `ray.init` to the last file
    written) and the rows it wrote."""
    if case["model"] != "pytorch":
        raise ValueError(f"the Ray Data case runs the PyTorch model, not {case['model']!r}")
    if not ready():
        raise RuntimeError(f"{VENV} is not built from {LOCK}: `make bench` builds it "
                           f"when the ray_data case is asked for")
    out = os.path.join(case["out"], "predictions")
    spec = {"files": record_files(case["data_root"]), "model_path": case["model_path"],
            "features": FEATURES, "batch_size": case["raw_batch_size"],
            "threads": case.get("threads") or 0, "out": out}
    spec_path = os.path.join(case["out"], "ray_spec.json")
    result_path = os.path.join(case["out"], "ray_result.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    # The project's PYTHONPATH is for the project's venv; Ray reports no usage (no network).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    log_path = os.path.join(case["out"], "ray_log.txt")
    # CPU: the Ray job's whole process tree, its Python's start-up and Ray's included.
    clock = Clock()
    with open(log_path, "w") as log:
        code = subprocess.run([str(VENV / "bin" / "python"), str(JOB), spec_path,
                               result_path], stdout=log, stderr=subprocess.STDOUT, env=env,
                              check=False).returncode
    _, cpu_seconds = clock.stop()
    if code or not os.path.exists(result_path):
        raise RuntimeError(f"the Ray job failed (exit status {code}): {_tail(log_path)}")
    with open(result_path) as f:
        result = json.load(f)
    return {"seconds": result["seconds"], "cpu_seconds": cpu_seconds,
            "records_out": count_rows(out),
            "batch_size": case["raw_batch_size"],
            "figures": {"init_seconds": result["init_seconds"],
                        "after_init_seconds": result["after_init_seconds"],
                        "ray": result["ray"]}}


def count_rows(folder: str) -> int:
    """Rows of the Parquet files in `folder`, from their footers."""
    import pyarrow.parquet as pq
    return sum(pq.ParquetFile(os.path.join(folder, name)).metadata.num_rows
               for name in os.listdir(folder) if name.endswith(".parquet"))


def _tail(path: str, lines: int = 5) -> str:
    with open(path, errors="replace") as f:
        return " | ".join(f.read().strip().splitlines()[-lines:])[-800:]
