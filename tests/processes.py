"""Processes the tests start in a session of their own (servers, emulators), on free
loopback ports, stopped with everything they started."""
import os
import signal
import socket
import subprocess
from typing import Optional


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signal_group(process: Optional[subprocess.Popen], sig: int = signal.SIGTERM,
                 timeout: float = 15):
    """Sends `sig` to the process group of `process` (started with
    `start_new_session=True`) and waits for it to end; SIGKILL after `timeout` s."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
