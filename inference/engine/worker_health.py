"""A worker process's health: what survives a hung model or a dying process.

`TimedCalls` runs a model's calls under a timeout without keeping a hung call's thread
alive at exit; `Breadcrumbs` and `enable_fault_reports` leave, per worker process, the
batch in flight and any native crash's traceback, which `worker_deaths` reads back for the
run's error; `freeze_long_lived_objects` keeps the collector off what a worker holds for
its whole life.
"""
import faulthandler
import gc
import json
import os
import queue
import threading
from typing import List, Optional, Sequence, Tuple

from inference.data.results import Origin, describe


class TimedCalls:
    """Calls run in a daemon worker thread, waited for up to a timeout.

    A call that runs over is abandoned to its thread, which stays blocked until the call
    returns, then ends: a daemon thread, so it never keeps the process from exiting (Beam's
    own timeout runs calls in a ThreadPoolExecutor, whose threads the interpreter joins at
    exit: a hung model then keeps the process alive for ever).
    """

    def __init__(self):
        self._requests: Optional[queue.Queue] = None

    def call(self, function, argument, timeout: float):
        if self._requests is None:
            self._requests = queue.Queue()
            threading.Thread(target=_serve, args=(self._requests,), daemon=True,
                             name="inference-timed-calls").start()
        reply: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((function, argument, reply))
        try:
            ok, value = reply.get(timeout=timeout)
        except queue.Empty:
            self._requests.put(None)  # the thread ends once the call returns, if ever
            self._requests = None
            raise TimeoutError() from None
        if not ok:
            raise value
        return value


def _serve(requests: queue.Queue):
    while True:
        request = requests.get()
        if request is None:
            return
        function, argument, reply = request
        try:
            reply.put((True, function(argument)))
        except BaseException as e:  # raised in the caller
            reply.put((False, e))


class Breadcrumbs:
    """Notes, per worker process, the batch in flight: model, size, where its records came
    from. Written to the page cache only (no fsync): a process that dies leaves it behind,
    a machine that dies takes it along."""

    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self._file = open(os.path.join(folder, f"inflight-{os.getpid()}.json"), "w")

    def batch_started(self, model: str, batch: Sequence[Tuple[Origin, List[bytes]]]):
        note = {"model": model, "records": sum(len(chunk) for _, chunk in batch),
                "pid": os.getpid(),
                "sources": [_source_range(origin, len(chunk)) for origin, chunk in batch]}
        self._write(json.dumps(note))

    def batch_done(self):
        self._write("")

    def _write(self, text: str):
        self._file.seek(0)
        self._file.write(text)
        self._file.truncate()
        self._file.flush()


def _source_range(origin: Origin, size: int) -> str:
    first = describe(origin, 0)
    return f"{first} to {describe(origin, size - 1).rsplit(':', 1)[-1]}" if first else ""


_FAULT_FILES = []


def enable_fault_reports(folder: str):
    """Once per process: a crash in native code (segfault, abort) writes every thread's
    Python traceback to `<folder>/faults-<pid>.log` (and Dataflow's worker log)."""
    if not _FAULT_FILES:
        os.makedirs(folder, exist_ok=True)
        _FAULT_FILES.append(open(os.path.join(folder, f"faults-{os.getpid()}.log"), "w"))
        faulthandler.enable(file=_FAULT_FILES[0], all_threads=True)


def worker_deaths(folder: str) -> List[str]:
    """What the breadcrumbs of `folder` say about worker processes that died mid-batch: one
    report per batch left in flight, with the crashing thread's Python traceback when the
    process crashed in native code."""
    if not folder or not os.path.isdir(folder):
        return []
    reports = []
    for name in sorted(os.listdir(folder)):
        if not name.startswith("inflight-"):
            continue
        with open(os.path.join(folder, name)) as f:
            text = f.read()
        if not text:
            continue
        note = json.loads(text)
        sources = "; ".join(s for s in note["sources"] if s)
        report = (f"model {note['model']!r} was inferring a batch of {note['records']} "
                  f"record(s) in worker process {note['pid']}"
                  + (f", from {sources}" if sources else ""))
        fault = _crashed_thread(os.path.join(folder, f"faults-{note['pid']}.log"))
        if fault:
            report += "\n    " + "\n    ".join(fault)
        reports.append(report)
    return reports


def _crashed_thread(path: str, limit: int = 30) -> List[str]:
    """From a faulthandler report: the error line and the crashing thread's traceback."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().strip().splitlines()
    if not lines:
        return []
    current = next((i for i, line in enumerate(lines) if line.startswith("Current thread")),
                   None)
    if current is None:
        return lines[:limit]
    end = next((i for i in range(current + 1, len(lines)) if not lines[i].strip()),
               len(lines))
    return [lines[0]] + lines[current:end][:limit]


_FROZEN = []


def freeze_long_lived_objects():
    """Moves what the worker holds after its first model load out of the collector's sight.

    Python's full garbage collections walk every tracked object: millions, once the
    frameworks and a model are loaded, and per-chunk objects trigger them often. What
    exists at the first load (modules, the model) lives as long as the worker, so once per
    process it is frozen (`gc.freeze`); later models stay collectable.
    """
    if not _FROZEN:
        gc.freeze()
        _FROZEN.append(True)
