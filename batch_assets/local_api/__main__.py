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
        if name in (
            "clock_offset_seconds",
            "pause_publishing_at",
            "sync_fault_queue",
            "upstream",
            "upstream_api_key_env",
        ):
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
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="[MODEL=]URL",
        help="send the batches' requests to this OpenAI-compatible server (its base URL, "
        "http://127.0.0.1:8000/v1, say), or MODEL=URL to route one model (repeat the flag); "
        "without it the local models answer",
    )
    parser.add_argument(
        "--upstream-api-key-env",
        metavar="NAME",
        help="the environment variable holding the upstream's API key (read, never stored)",
    )


def settings_of(args: argparse.Namespace) -> Simulation:
    """The settings the flags give; a bad one ends the program, naming its flag."""
    try:
        return Simulation(
            **{name: getattr(args, name) for name in Simulation.model_fields if hasattr(args, name)}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise SystemExit(f"python -m batch_assets.local_api: {flag}: {first['msg']}") from None


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
    settings = settings_of(args)
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    warning = open_to_others_warning(host, args.api_key)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    shown_host = f"[{host}]" if ":" in host else host
    app = create_app(args.state_dir, settings, api_key=args.api_key)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", **uvicorn_http_options()
    )
    server = _AnnouncingServer(config, f"http://{shown_host}:{port}/v1")
    server.run(sockets=[sock])
    sys.exit(0 if server.started else 1)


if __name__ == "__main__":
    main()
