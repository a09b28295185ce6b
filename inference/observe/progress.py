"""Progress of a long local run: every `interval` seconds, one log line per model with the
records it has inferred, the share of the input bytes read, its records/s and an ETA.

Beam's DirectRunner reports nothing until a pipeline ends, and its metrics cannot be read
while it runs, so the engine counts here as it goes: the reader registers each input
file's size and the bytes it reads, the model handler the records each batch inferred.
The counts are process-local (the in-process DirectRunner runs every stage in the
process that started the pipeline), thread-safe, and cheap (a lock and an addition per
read or batch). Nothing is logged until `start` is called in this process, so Beam
workers elsewhere (Dataflow, DirectRunner's multi_processing workers) stay quiet; and a
run shorter than the interval logs nothing.
"""
import logging
import os
import threading
import time
from typing import Callable, Dict, Optional

# Seconds between progress lines; the environment variable INFERENCE_PROGRESS_SECS sets it.
DEFAULT_INTERVAL_SECS = 10.0

logger = logging.getLogger(__name__)


class Tracker:
    """Counts of one run in this process; logs a line per model every `interval` seconds."""

    def __init__(self, interval: float = DEFAULT_INTERVAL_SECS,
                 clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.interval = interval
        self.active = False
        self._reset()

    def _reset(self):
        self.bytes_total = self.bytes_read = 0
        self.done: Dict[str, int] = {}
        self._first: Dict[str, float] = {}
        self._started = self._last = self._clock()

    def start(self, interval: Optional[float] = None):
        """Begins counting a new run in this process (what came before is forgotten)."""
        with self._lock:
            self._reset()
            if interval is not None:
                self.interval = interval
            self.active = True

    def stop(self):
        with self._lock:
            self.active = False

    def input_file(self, size: int):
        """An input file of `size` bytes that this run will read."""
        if self.active:
            with self._lock:
                self.bytes_total += size

    def read(self, count: int):
        """`count` more bytes of the input were read."""
        if self.active:
            with self._lock:
                self.bytes_read += count
            self._maybe_log()

    def inferred(self, model: str, records: int):
        """`records` more records of `model` went through the model (predicted or failed)."""
        if self.active:
            with self._lock:
                if model not in self.done:
                    self._first[model] = self._clock()
                self.done[model] = self.done.get(model, 0) + records
            self._maybe_log()

    def lines(self):
        """The progress lines as of now, one per model."""
        now = self._clock()
        with self._lock:
            share = self.bytes_read / self.bytes_total if self.bytes_total else None
            rows = [(model, done, self._first[model]) for model, done in self.done.items()]
        lines = []
        for model, done, first in rows:
            rate = done / max(now - first, 1e-9)
            text = f"progress: model {model!r}: {done:,} records done"
            if share is not None:
                text += f", {share:.0%} of the input bytes read"
            text += f", {rate:,.0f} records/s"
            if share:
                remaining = done / share - done  # this model's records per byte read so far
                text += f", ETA {remaining / rate:.0f} s" if rate else ""
            lines.append(text)
        return lines

    def _maybe_log(self):
        now = self._clock()
        if now - self._last < self.interval:
            return
        with self._lock:
            if now - self._last < self.interval:
                return  # another thread just logged
            self._last = now
        for line in self.lines():
            logger.info(line)


def _interval_from_env() -> float:
    return float(os.environ.get("INFERENCE_PROGRESS_SECS") or DEFAULT_INTERVAL_SECS)


TRACKER = Tracker(_interval_from_env())


def start():
    """Begins a run's progress in this process (the BulkInferrer executor calls it)."""
    TRACKER.start(_interval_from_env())


def stop():
    TRACKER.stop()


def input_file(metadata):
    """Registers a matched input file (Beam's FileMetadata) of the run; returns it."""
    TRACKER.input_file(metadata.size_in_bytes)
    return metadata


class _CountedReads:
    """An input file whose reads count as the run's bytes read."""

    def __init__(self, raw):
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        TRACKER.read(len(data))
        return data


def counted(raw) -> _CountedReads:
    """An open input file (`read` only), its reads counted."""
    return _CountedReads(raw)


def inferred(model: str, records: int):
    TRACKER.inferred(model, records)
