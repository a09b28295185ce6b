"""What a local run prints: one line as each component starts and one as it ends (state,
seconds, the artifacts it made), the BulkInferrers' progress, then the run summary. The
full logs (TFX's, Beam's, TensorFlow's, C++ included) go to a file whose path is printed;
FULL_LOGS=1 keeps them on the console instead.

Imports nothing heavy at module level: `start` must run before TensorFlow is imported, so
that its import-time logs land in the file too.
"""
import datetime
import logging
import os
import sys
import time
from typing import Optional, TextIO

FULL_LOGS_VARIABLE = "FULL_LOGS"
# The LocalDagRunner's messages as a component starts, ends or is skipped.
_RUNNING, _FINISHED, _SKIPPED = ("Component %s is running.", "Component %s is finished.",
                                 "Skipping component %s.")


class Console:
    """Lines for a person, on the terminal the run started from."""

    def __init__(self, stream: TextIO, log_path: Optional[str]):
        self.stream = stream
        self.log_path = log_path
        self.started = time.time()

    def print(self, text: str = ""):
        self.stream.write(text + "\n")
        self.stream.flush()

    def event(self, text: str):
        """A line stamped with the seconds since the run started."""
        self.print(f"[{time.time() - self.started:6.1f}s] {text}")

    def watch(self, metadata_path: str, pipeline_name: str):
        """Prints component and progress lines from the run's log records from now on."""
        if not logging.getLogger().handlers:
            logging.basicConfig()  # so records still reach stderr (the log) beside ours
        logging.getLogger().addHandler(_ComponentLines(self, metadata_path, pipeline_name))
        logging.getLogger("inference.observe.progress").setLevel(logging.INFO)


def start(output_dir: str, pipeline_name: str) -> Console:
    """The console of a local run. Unless FULL_LOGS is set, everything the process writes
    to its standard output and error from now on goes to
    `<output_dir>/logs/<pipeline>-<time>.log` instead (file descriptors 1 and 2, so that
    C++ logs go too); the console writes to the terminal."""
    if os.environ.get(FULL_LOGS_VARIABLE, "") not in ("", "0"):
        return Console(sys.stdout, None)
    folder = os.path.join(output_dir, "logs")
    os.makedirs(folder, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(folder, f"{pipeline_name}-{stamp}.log")
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(1), "w")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    console = Console(terminal, log_path)
    console.print(f"Full log: {shown(log_path)} (FULL_LOGS=1 prints it here instead)")
    return console


def shown(path: str) -> str:
    """`path` relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


class _ComponentLines(logging.Handler):
    """Turns the LocalDagRunner's and the progress tracker's log records into lines."""

    def __init__(self, console: Console, metadata_path: str, pipeline_name: str):
        super().__init__(logging.INFO)
        self._console = console
        self._metadata_path = metadata_path
        self._pipeline_name = pipeline_name
        self._began = {}

    def emit(self, record: logging.LogRecord):
        try:
            if record.name == "inference.observe.progress":
                self._console.event("    " + record.getMessage())
            elif record.msg in (_RUNNING, _FINISHED, _SKIPPED) and record.args:
                node = record.args[0]
                if record.msg == _RUNNING:
                    self._began[node] = time.time()
                    self._console.event(f"{node} running")
                elif record.msg == _SKIPPED:
                    self._console.event(f"{node} skipped")
                else:
                    self._console.event(self._finished(node))
        except Exception:  # a line must never fail the run
            self.handleError(record)

    def _finished(self, node: str) -> str:
        seconds = time.time() - self._began.pop(node, time.time())
        from components import run_summary
        store = run_summary.open_store(self._metadata_path)
        run = run_summary.latest_run(store, self._pipeline_name)
        rows = [r for r in run_summary.node_states(store, run) if r[0] == node] if run else []
        if not rows:
            return f"{node} finished in {seconds:.1f} s"
        _, state, execution = rows[-1]
        uris = sorted(shown(a.uri) for _, a, _ in run_summary.output_artifacts(store, execution))
        line = f"{node} {state} in {seconds:.1f} s"
        if uris:  # <root>/<node>/<output>/<execution>: the node's folder once, then each
            folder = os.path.commonpath(uris)
            folder = os.path.dirname(os.path.dirname(folder)) if len(uris) == 1 else folder
            line += f" -> {folder}/ " + ", ".join(os.path.relpath(u, folder) for u in uris)
        return line
