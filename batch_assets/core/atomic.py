"""Write a file whole or not at all: to a locked temporary name beside it, then rename."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_SUFFIX = ".partial"
# mkstemp makes files only their owner can read; finished files get the usual mode instead.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def locked_temporary(destination: Path) -> tuple[Path, int]:
    """A new temporary file beside `destination`, and the descriptor that holds its lock.

    The writer holds the lock until it renames or deletes the file; the kernel drops it when the
    writer dies, which is how `remove_orphaned_temporaries` tells a dead writer's file apart.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=TEMPORARY_SUFFIX
    )
    fcntl.flock(handle, fcntl.LOCK_EX)
    os.fchmod(handle, FILE_MODE)
    return Path(name), handle


def _flush_to_disk(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """A temporary path to write; synced and renamed to `destination` if the block succeeds."""
    temporary, lock = locked_temporary(destination)
    try:
        yield temporary
        _flush_to_disk(temporary)
        os.replace(temporary, destination)
    finally:
        os.close(lock)
        temporary.unlink(missing_ok=True)


def remove_orphaned_temporaries(folder: Path) -> list[Path]:
    """Delete the temporaries under `folder` that no live writer holds locked.

    A process killed mid-write (SIGKILL, out of memory) leaves its temporary behind, unlocked.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.rglob(f".*{TEMPORARY_SUFFIX}"):
        try:
            handle = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(handle)
    return removed
