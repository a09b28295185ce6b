"""Wall and CPU seconds of a case's timed part.

CPU seconds are user + system time of this process (every thread) and of the child
processes it waited for, which is how Beam's worker processes (`multi_processing`) and a
Ray job's processes end: what a machine billed by the vCPU-hour pays for.
"""
import os
import time
from typing import Tuple


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Clock:
    """Started when made; `stop()` -> (wall seconds, CPU seconds) since."""

    def __init__(self):
        self._wall = time.perf_counter()
        self._cpu = _cpu()

    def stop(self) -> Tuple[float, float]:
        return time.perf_counter() - self._wall, _cpu() - self._cpu
