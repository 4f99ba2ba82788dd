"""Write a file whole or not at all: to a temporary name beside it, then rename."""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
# `.<final name>.<host>-<pid>.<random>`, and `.tmp` after it for shards.
_TEMPORARY_NAME = re.compile(r"\..+\.(?P<host>[A-Za-z0-9_-]+?)-(?P<pid>\d+)\.[A-Za-z0-9_]+(\.tmp)?")


def owner_tag() -> str:
    """This host and process, as temporary names carry them so that orphans can be found."""
    return f"{_HOST}-{os.getpid()}"


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """A temporary path to write; renamed to `destination` only if the block succeeds."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.{owner_tag()}."
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, destination: Path) -> Path:
    """Write a frame as Parquet, atomically."""
    with atomic_path(destination) as temporary:
        frame.write_parquet(temporary)
    return destination


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries under `folder` whose writer, a process on this host, is gone.

    A process killed mid-write (SIGKILL, out of memory) leaves its temporary behind; files of
    other hosts and of running processes are left alone.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(".*"):
        match = _TEMPORARY_NAME.fullmatch(path.name)
        if match is None or match["host"] != _HOST or _running(int(match["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
