"""Real servers on loopback for tests and benchmarks: PostgreSQL (`postgres`) and S3 (`s3`).

Each starter runs its server as a child process on a free 127.0.0.1 port, waits until it answers,
and stops it (and removes what it wrote) in `stop()`. Nothing here needs pytest.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """`preexec_fn`: the child gets SIGKILL when the process that started it dies (Linux only).

    A test process killed outright then leaves no server behind.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_process(process: subprocess.Popen[Any] | None, sig: int, timeout: float = 15.0) -> None:
    """Send `sig`, wait up to `timeout` seconds, then SIGKILL; always reaps the child."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(
    ready: Callable[[], bool],
    *,
    process: subprocess.Popen[Any],
    timeout: float,
    what: str,
    log: Callable[[], str],
) -> None:
    """Poll `ready` until it is true; fail early, with the log, if `process` exits."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout}s:\n{log()}")
        time.sleep(0.05)


def read_log(path: os.PathLike[str] | str) -> str:
    """The last 4000 characters of a log file, or '' when there is none."""
    try:
        with open(path, errors="replace") as file:
            return file.read()[-4000:]
    except FileNotFoundError:
        return ""
