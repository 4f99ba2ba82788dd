"""`make run`: the local Batch API (unless a key is set) and `dagster dev`, stopped together."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from batch_assets.local_api.process import LocalBatchAPIProcess
from batch_assets.project import PROJECT_ROOT

LOCAL_API_KEY = "local-batch-api"
# Slow enough to watch progress in the UI, fast enough to finish the examples in seconds.
LOCAL_SECONDS_PER_REQUEST = "0.02"
LOCAL_SENSOR_INTERVAL_SECONDS = "10"
UPSTREAM_URL = "UPSTREAM_URL"
"""A model server (`http://127.0.0.1:8000/v1`; or `MODEL=URL` pairs, space-separated) that the
local Batch API sends the batches' requests to, as a gateway."""
UPSTREAM_API_KEY = "UPSTREAM_API_KEY"


def local_api_flags(environ: dict[str, str]) -> tuple[str, ...]:
    """The local Batch API's flags: paced local models, or a gateway to $UPSTREAM_URL."""
    upstreams = environ.get(UPSTREAM_URL, "").split()
    if not upstreams:
        return ("--seconds-per-request", LOCAL_SECONDS_PER_REQUEST)
    flags = [flag for upstream in upstreams for flag in ("--upstream", upstream)]
    if environ.get(UPSTREAM_API_KEY):
        flags += ["--upstream-api-key-env", UPSTREAM_API_KEY]
    return tuple(flags)


def backend_environment(
    environ: dict[str, str], state_dir: Path, api_port: int
) -> tuple[dict[str, str], LocalBatchAPIProcess | None]:
    """The environment for Dagster, and the local Batch API process when no key is set."""
    env = dict(environ)
    if env.get("OPENAI_API_KEY"):
        target = env.get("OPENAI_BASE_URL") or "OpenAI"
        print(f"OPENAI_API_KEY is set: the pipelines will call {target}.", flush=True)
        return env, None
    server = LocalBatchAPIProcess(state_dir, local_api_flags(env)).start(api_port)
    env["OPENAI_API_KEY"] = LOCAL_API_KEY
    env["OPENAI_BASE_URL"] = server.base_url
    env.setdefault("BATCH_ASSETS_SENSOR_INTERVAL_SECONDS", LOCAL_SENSOR_INTERVAL_SECONDS)
    print(
        f"No OPENAI_API_KEY: the pipelines use the local Batch API at {server.base_url}", flush=True
    )
    if env.get(UPSTREAM_URL):
        print(f"It sends the batches' requests to {env[UPSTREAM_URL]}.", flush=True)
    return env, server


def main(argv: list[str] | None = None) -> int:
    """Start both, wait for Dagster, stop both."""
    parser = argparse.ArgumentParser(prog="python -m batch_assets.launcher")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    parser.add_argument("--host", default="127.0.0.1", help="Dagster UI host")
    parser.add_argument("--api-port", type=int, default=0, help="local Batch API port (0: any)")
    args = parser.parse_args(argv)
    dagster_home = Path(os.environ.get("DAGSTER_HOME", PROJECT_ROOT / ".dagster_home"))
    dagster_home.mkdir(parents=True, exist_ok=True)
    env, server = backend_environment(
        dict(os.environ), PROJECT_ROOT / ".local_api_state", args.api_port
    )
    env["DAGSTER_HOME"] = str(dagster_home)
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    dagster = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    try:
        return dagster.wait()
    except KeyboardInterrupt:
        dagster.send_signal(signal.SIGINT)
        return dagster.wait()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
