"""`python -m batch_assets.local_api`: serve the local Batch API."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
import typing
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from batch_assets.local_api.app import create_app
from batch_assets.local_api.http_protocol import uvicorn_http_options
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.upstream import (
    BACKOFF_SECONDS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_SECONDS,
    UpstreamConfig,
    UpstreamRoutes,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the simulation settings as flags."""
    parser = argparse.ArgumentParser(
        prog="python -m batch_assets.local_api",
        description="An offline server that speaks OpenAI's Files and Batches protocol.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="where files and batches live"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LOCAL_BATCH_API_KEY"),
        help="require 'Authorization: Bearer KEY' (default: $LOCAL_BATCH_API_KEY, else any bearer)",
    )
    _add_upstream_flags(parser)
    defaults = Simulation()
    for name, field in Simulation.model_fields.items():
        if name in ("clock_offset_seconds", "pause_publishing_at", "sync_fault_queue"):
            continue
        kind = int if int in typing.get_args(field.annotation) else float
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=getattr(defaults, name),
            help=f"{field.description} (default {getattr(defaults, name)})",
        )
    return parser.parse_args(argv)


def _add_upstream_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "gateway", "send the batches' requests to an OpenAI-compatible server instead"
    )
    group.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="[MODEL=]URL",
        help="the server's base URL (http://127.0.0.1:8000/v1, say); MODEL=URL routes one model "
        "(repeat the flag); without it the local models answer",
    )
    group.add_argument(
        "--upstream-api-key-env",
        metavar="NAME",
        help="the environment variable holding the upstream's API key (read, never stored)",
    )
    group.add_argument(
        "--upstream-concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight at most, across all batches (default {DEFAULT_CONCURRENCY})",
    )
    group.add_argument(
        "--upstream-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds one try may take (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    group.add_argument(
        "--upstream-max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        help=f"tries after the first, on 429, 5xx and connection errors (default "
        f"{DEFAULT_MAX_RETRIES})",
    )
    group.add_argument(
        "--upstream-backoff",
        type=float,
        default=BACKOFF_SECONDS,
        help="seconds before the first retry of a connection error or a 5xx without "
        f"retry-after, doubled at each retry (default {BACKOFF_SECONDS:g})",
    )


def upstream_config(args: argparse.Namespace) -> UpstreamConfig | None:
    """The gateway's settings from the flags; None without --upstream."""
    if not args.upstream:
        return None
    if args.upstream_concurrency < 1:
        raise ValueError("--upstream-concurrency: must be at least 1")
    if args.upstream_timeout <= 0:
        raise ValueError("--upstream-timeout: must be more than 0")
    if args.upstream_max_retries < 0:
        raise ValueError("--upstream-max-retries: must be 0 or more")
    if args.upstream_backoff < 0:
        raise ValueError("--upstream-backoff: must be 0 or more")
    return UpstreamConfig(
        routes=UpstreamRoutes.parse(args.upstream),
        api_key_env=args.upstream_api_key_env,
        concurrency=args.upstream_concurrency,
        timeout_seconds=args.upstream_timeout,
        max_retries=args.upstream_max_retries,
        backoff_seconds=args.upstream_backoff,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket; IPPROTO_TCP so that asyncio sets TCP_NODELAY on its connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def open_to_others_warning(host: str, api_key: str | None) -> str | None:
    """The warning for a server that listens beyond loopback with no API key, else None."""
    if api_key or ipaddress.ip_address(host).is_loopback:
        return None
    return (
        f"warning: the local Batch API listens on {host}, beyond loopback, without --api-key: "
        "anyone who can reach this port can read, create and delete its files and batches. "
        "Pass --api-key (or set LOCAL_BATCH_API_KEY) to require a key."
    )


class _AnnouncingServer(uvicorn.Server):
    """Prints the one ready line once the server accepts requests."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"serving {self.url}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse flags, bind, and serve until interrupted."""
    args = parse_args(argv)
    try:
        settings = Simulation(
            **{name: getattr(args, name) for name in Simulation.model_fields if hasattr(args, name)}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise SystemExit(f"python -m batch_assets.local_api: {flag}: {first['msg']}") from None
    try:
        upstream = upstream_config(args)
    except ValueError as exc:
        raise SystemExit(f"python -m batch_assets.local_api: {exc}") from None
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    warning = open_to_others_warning(host, args.api_key)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    shown_host = f"[{host}]" if ":" in host else host
    app = create_app(args.state_dir, settings, api_key=args.api_key, upstream=upstream)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", **uvicorn_http_options()
    )
    server = _AnnouncingServer(config, f"http://{shown_host}:{port}/v1")
    server.run(sockets=[sock])
    sys.exit(0 if server.started else 1)


if __name__ == "__main__":
    main()
