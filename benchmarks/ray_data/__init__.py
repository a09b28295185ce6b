"""Ray Data as a benchmark case, in a virtualenv of its own.

Ray's pins clash with TFX's, so the case runs `job.py` with the Python of `.venv-ray`
(gitignored), built from `requirements.lock` beside this file by the project's `uv` on
first use, and rebuilt when the lock changes; `make test` never builds it. The harness
measures the job's process tree (the driver, Ray's daemons and workers) like any case's.
"""
import hashlib
import json
import os
import subprocess
import sys
from typing import Any, Dict, Optional

from benchmarks.data import FEATURES, PROJECT_DIR, record_files

HERE = os.path.dirname(os.path.abspath(__file__))
LOCK = os.path.join(HERE, "requirements.lock")
JOB = os.path.join(HERE, "job.py")
VENV = os.path.join(PROJECT_DIR, ".venv-ray")
PYTHON = os.path.join(VENV, "bin", "python")
_STAMP = os.path.join(VENV, ".installed")


def _lock_digest() -> str:
    with open(LOCK, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def ready() -> bool:
    """Whether .venv-ray is built from the current lock."""
    try:
        with open(_STAMP) as f:
            return f.read().strip() == _lock_digest()
    except OSError:
        return False


def ensure_venv() -> Optional[str]:
    """Builds .venv-ray from the lock unless it is built from it already (a few minutes
    the first time: Ray, PyTorch and TensorFlow wheels, from the uv cache where the
    project's venv put them). Returns None, or why it could not be built."""
    if ready():
        return None
    uv = os.path.join(os.path.dirname(sys.executable), "uv")  # in the project's venv
    # The project's own interpreter (Python 3.10, what the lock is resolved for).
    base = os.path.realpath(sys.executable)
    steps = [[uv, "pip", "sync", "-q", "--python", PYTHON, LOCK]]
    if not os.path.exists(PYTHON):
        steps.insert(0, [uv, "venv", "-q", "--python", base, VENV])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
        except OSError as e:
            done = subprocess.CompletedProcess(step, 1, "", str(e))
        if done.returncode:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return (f"the Ray Data case needs {VENV}, built from {LOCK} with packages "
                    f"from PyPI (ray, torch, tensorflow: a few GB), and `{' '.join(step)}` "
                    f"failed: {' '.join(detail)}. Fix the cause (network, disk), delete "
                    f"{VENV} and run again, or leave the case out (--kinds)")
    with open(_STAMP, "w") as f:
        f.write(_lock_digest())
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
            "torch_threads": case.get("torch_threads") or 0, "out": out}
    spec_path = os.path.join(case["out"], "ray_spec.json")
    result_path = os.path.join(case["out"], "ray_result.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    # The project's PYTHONPATH is for the project's venv; Ray reports no usage (no network).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    log_path = os.path.join(case["out"], "ray_log.txt")
    with open(log_path, "w") as log:
        code = subprocess.run([PYTHON, JOB, spec_path, result_path], stdout=log,
                              stderr=subprocess.STDOUT, env=env, check=False).returncode
    if code or not os.path.exists(result_path):
        raise RuntimeError(f"the Ray job failed (exit status {code}): {_tail(log_path)}")
    with open(result_path) as f:
        result = json.load(f)
    return {"seconds": result["seconds"], "records_out": count_rows(out),
            "batch_size": case["raw_batch_size"],
            "figures": {"init_seconds": result["init_seconds"],
                        "after_init_seconds": result["after_init_seconds"],
                        "ray": result["ray"]}}


def count_rows(folder: str) -> int:
    """Rows of the Parquet files in `folder`, from their footers."""
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
    return sum(pq.ParquetFile(os.path.join(folder, name)).metadata.num_rows
               for name in os.listdir(folder) if name.endswith(".parquet"))


def _tail(path: str, lines: int = 5) -> str:
    with open(path, errors="replace") as f:
        return " | ".join(f.read().strip().splitlines()[-lines:])[-800:]
