"""A materialization in a child process, SIGKILLed at a chosen moment: a crash mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.local_api_server import wait_for

ROOT = Path(__file__).resolve().parents[2]


def start_run(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Run `module.main(*args)` in a child Python process, its output into `log`."""
    code = f"import sys; from {module} import main; main(*sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def kill_when(process: subprocess.Popen[bytes], ready: Callable[[], object], log: Path) -> None:
    """SIGKILL the run as soon as `ready()` is truthy; fail if it ended on its own first."""
    try:
        wait_for(lambda: process.poll() is not None or ready(), timeout=120, interval=0.05)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, log.read_text()
