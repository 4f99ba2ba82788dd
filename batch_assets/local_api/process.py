"""Run the local Batch API as a child process and talk to its admin endpoint."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_SECONDS = 30.0


@dataclass
class LocalBatchAPIProcess:
    """A running `python -m batch_assets.local_api` process and how to reach it."""

    state_dir: Path
    flags: tuple[str, ...] = ()
    api_key: str | None = None
    process: subprocess.Popen[str] | None = None
    base_url: str = ""
    ready_line: str = ""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / "server.log"

    def start(self, port: int = 0) -> LocalBatchAPIProcess:
        """Start the server and wait for its ready line."""
        command = [
            sys.executable,
            "-m",
            "batch_assets.local_api",
            "--port",
            str(port),
            "--state-dir",
            str(self.state_dir),
            *self.flags,
        ]
        if self.api_key is not None:
            command += ["--api-key", self.api_key]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_SECONDS)
        if not ready:
            self.stop()
            raise RuntimeError(f"no ready line within {READY_TIMEOUT_SECONDS}s: {self.log()}")
        self.ready_line = self.process.stdout.readline().strip()
        if not self.ready_line.startswith("serving "):
            self.stop()
            raise RuntimeError(f"unexpected first line {self.ready_line!r}: {self.log()}")
        self.base_url = self.ready_line.removeprefix("serving ")
        return self

    @property
    def root_url(self) -> str:
        """The server's address without `/v1`."""
        return self.base_url.removesuffix("/v1")

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.root_url.rsplit(":", 1)[1])

    def log(self) -> str:
        """What the server wrote to stderr."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def admin(self, method: str = "GET", path: str = "settings", body: Any = None) -> Any:
        """Call the admin endpoint and return its JSON."""
        request = urllib.request.Request(
            f"{self.root_url}/admin/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change simulation settings at runtime."""
        return self.admin("PATCH", "settings", changes)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL to simulate a crash) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def restart(self) -> LocalBatchAPIProcess:
        """Start again on the same port and state directory."""
        port = self.port
        self.stop()
        return self.start(port)
