"""Runs each case in a fresh process and measures its peak memory.

fork mode (default): the parent imports the heavy modules (TensorFlow, PyTorch, Beam, TFX)
once, without running anything, and forks one child per case: a fresh process per case
without paying ~20-60 s of imports each time. spawn mode starts a new interpreter per case
(`python -m benchmarks.cases`) instead.

A case whose processes hold more than 60% of the machine's memory is stopped (and
reported as such) before the kernel's OOM killer would pick a victim.

Peak memory per case: `max_rss_mb` is the largest resident set of any one process of the
case (the child's `wait4` rusage covers it and the worker processes it waited for); a
sampler also sums the RSS of the case's whole process tree every 0.1 s (`tree_rss_mb`,
which counts pages shared between processes once per process).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Dict, Optional

import psutil

HEAVY_MODULES = (
    "tensorflow", "torch", "apache_beam", "apache_beam.ml.inference.base",
    "apache_beam.ml.inference.pytorch_inference", "apache_beam.ml.inference.sklearn_inference",
    "apache_beam.ml.inference.onnx_inference", "apache_beam.io.tfrecordio",
    "apache_beam.runners.portability.fn_api_runner", "tfx_bsl.coders.example_coder",
    "tfx.components.bulk_inferrer.executor", "components.bulk_inferrer.executor",
    "inference.io.encoding", "sklearn.neural_network", "onnxruntime", "onnx", "joblib",
)


def preload():
    """Imports what the cases use, so forked children start with it (nothing is run)."""
    import importlib
    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # the case will report it
            pass


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        procs = [process] + process.children(recursive=True)
    except psutil.Error:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def default_memory_limit() -> float:
    """Bytes a case may hold (its process tree's RSS): 60% of this machine's memory."""
    return 0.6 * psutil.virtual_memory().total


def _wait(pid: int, timeout: float, memory_limit: float):
    """Waits for `pid`, sampling its tree's RSS; kills its process group on timeout or
    when the tree holds more than `memory_limit` bytes (before the OOM killer picks a
    victim, maybe another process of the machine)."""
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        process = None
    peak_tree = 0
    deadline = time.time() + timeout
    killed = ""
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited:
            break
        if process is not None:
            peak_tree = max(peak_tree, _tree_rss(process))
        if not killed and time.time() > deadline:
            killed = f"timed out after {timeout:.0f} s"
        elif not killed and peak_tree > memory_limit:
            killed = (f"killed: its processes held {peak_tree / 2**30:.1f} GiB "
                      f"(limit {memory_limit / 2**30:.1f} GiB)")
        if killed:
            _kill_group(pid)
        time.sleep(0.1)
    code = os.waitstatus_to_exitcode(status)
    return code, usage.ru_maxrss / 1024, peak_tree / 2**20, killed


def _kill_group(pid: int):
    try:
        os.killpg(pid, signal.SIGKILL)  # the case's own process group (setsid in the child)
    except ProcessLookupError:
        pass


def run_isolated(fn: Callable[[Dict[str, Any]], Dict[str, Any]], case: Dict[str, Any],
                 *, spawn: bool = False, timeout: float = 3600,
                 memory_limit: Optional[float] = None,
                 log_file: Optional[str] = None) -> Dict[str, Any]:
    """fn(case) in a fresh process; its result with max_rss_mb, tree_rss_mb, exit status.

    In spawn mode `fn` must be `benchmarks.cases.run_case`.
    """
    # An empty folder per run: --repeat's rounds would otherwise count the last one's files.
    shutil.rmtree(case["out"], ignore_errors=True)
    os.makedirs(case["out"])
    result_path = os.path.join(case["out"], "result.json")
    log_file = log_file or os.path.join(case["out"], "log.txt")
    started = time.perf_counter()
    if spawn:
        case_path = os.path.join(case["out"], "case.json")
        with open(case_path, "w") as f:
            json.dump(case, f)
        with open(log_file, "w") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.cases", case_path, result_path],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        pid = child.pid
    else:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(fn, case, result_path, log_file)
    code, max_rss, tree_rss, killed = _wait(pid, timeout,
                                            memory_limit or default_memory_limit())
    wall = time.perf_counter() - started
    result: Dict[str, Any] = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if killed:
        result["error"] = killed
    elif code != 0 and "error" not in result:
        result["error"] = f"exit status {code}; see {log_file}"
    result.update(max_rss_mb=round(max_rss, 1), tree_rss_mb=round(tree_rss, 1),
                  process_seconds=round(wall, 2), log=log_file)
    return result


def _child(fn, case, result_path, log_file):
    code = 1
    try:
        os.setsid()
        fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            result = fn(case)
            code = 0
        except BaseException as e:
            traceback.print_exc()
            result = {"error": f"{type(e).__name__}: {e}"[:500]}
        with open(result_path, "w") as f:
            json.dump(result, f, default=str)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
