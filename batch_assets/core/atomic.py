"""Write a file whole or not at all: to a temporary name beside it, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """A temporary path to write; renamed to `destination` only if the block succeeds."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
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
