"""Decode a large line-oriented file in two processes: this one and a helper started for it.

The file is cut at line ends into chunks of about equal size. This process decodes chunks from
the front, the helper from the back, each taking a chunk by creating its claim file exclusively,
until they meet: the work balances itself whatever the helper's start time or the machine's load.
The helper writes each chunk's frame as Arrow IPC into a scratch folder; this process reads each
as it appears, between its own chunks (the reading is work too, and so the helper takes more
chunks for it), and returns every frame in file order.

The helper is a fresh interpreter (`sys.executable -c`, as multiprocessing's `spawn`, but without
running `__main__` again): safe to start from a threaded process such as Dagster's, and it imports
only the decoder's module. A `ValueError` of the decoder (a line that is not JSON) is raised as
one process would: the one of the first bad line in the file. If the helper dies (killed, out of
memory, or unable to start), this process decodes the chunks it left, with a warning.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import polars as pl

RangeDecoder = Callable[[Path, int, int, str], pl.DataFrame]
"""decode(path, start, end, source): the frame of the lines in bytes [start, end) of the file;
`source` names the file in errors."""

_LOG = logging.getLogger(__name__)
CHUNKS = 64  # per file: the two processes finish within about one chunk of each other
_SEEK_BYTES = 64 * 1024
_ERROR = "error"  # the helper's file for the message of the first bad line it found
_HELPER = (
    "import sys; from batch_assets.core.output_split import serve; sys.exit(serve(sys.argv[1:]))"
)


def chunk_bounds(path: Path, chunks: int = CHUNKS) -> list[int]:
    """Offsets that cut the file into at most `chunks` runs of whole lines, about equal in size."""
    size = path.stat().st_size
    step = max(-(-size // chunks), 1)  # rounded up: never more than `chunks`
    bounds = [0]
    with path.open("rb") as stream:
        while bounds[-1] < size:
            bounds.append(_line_end_after(stream, bounds[-1] + step - 1, size))
    return bounds


def _line_end_after(stream: BinaryIO, offset: int, size: int) -> int:
    """The offset just past the first line end at or after `offset`; the size if there is none."""
    stream.seek(offset)
    while offset < size:
        data = stream.read(_SEEK_BYTES)
        found = data.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(data)
    return size


class _Claims:
    """Chunks taken by exactly one process each: a claim file per chunk, created exclusively."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def take(self, index: int) -> bool:
        """Whether this process now holds chunk `index` (False: the other one took it first)."""
        try:
            os.close(os.open(self.folder / f"{index}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def decode_in_two_processes(
    path: Path, source: str, decode: RangeDecoder, chunks: int = CHUNKS
) -> list[pl.DataFrame]:
    """The frames of every chunk of the file in file order, decoded here and in a helper.

    `decode` must be a module-level function, for the helper imports it by name.
    """
    bounds = chunk_bounds(path, chunks)
    last = len(bounds) - 2
    if last < 1:
        return [decode(path, bounds[0], bounds[-1], source)]
    with tempfile.TemporaryDirectory(prefix="output-split-") as scratch:
        folder = Path(scratch)
        claims = _Claims(folder)
        claims.take(0)
        claims.take(last)  # the helper's first chunk, so that it always takes part
        helper = _start_helper(decode, path, source, folder, bounds)
        try:
            written = _HelperFrames(folder, last)
            frames = _decode_front(path, source, decode, bounds, claims, written)
            failed = helper.wait() != 0
            written.read_ready()
            if failed:  # it died (killed, out of memory, could not start): its chunks left, here
                _LOG.warning(
                    "%s: the helper process decoding the file failed; this process decodes "
                    "the rest:\n%s",
                    source,
                    (folder / "stderr").read_text(errors="replace").strip(),
                )
                frames += [
                    decode(path, bounds[index], bounds[index + 1], source)
                    for index in range(len(frames), written.next + 1)
                ]
            if (folder / _ERROR).exists():  # the first bad line, all before it being good
                raise ValueError((folder / _ERROR).read_text("utf-8", "surrogateescape"))
            if written.next != len(frames) - 1:
                raise RuntimeError(f"{source}: the helper process left chunks undecoded")
            return frames + written.frames[::-1]
        finally:
            if helper.poll() is None:
                helper.kill()
                helper.wait()


class _HelperFrames:
    """The frames the helper has written (from the last chunk back), read as they appear."""

    def __init__(self, folder: Path, last: int) -> None:
        self.folder = folder
        self.next = last  # the chunk whose frame comes next
        self.frames: list[pl.DataFrame] = []

    def read_ready(self) -> None:
        """Read (and delete) every frame the helper has finished since the last call."""
        while (written := self.folder / f"{self.next}.arrow").exists():
            self.frames.append(pl.read_ipc(written))
            written.unlink()
            self.next -= 1


def _decode_front(
    path: Path,
    source: str,
    decode: RangeDecoder,
    bounds: list[int],
    claims: _Claims,
    written: _HelperFrames,
) -> list[pl.DataFrame]:
    """This process's share, chunks from the first on while it can claim them; in between it
    reads the helper's frames, so that the helper takes more chunks for the reading."""
    frames = []
    index = 0
    while True:
        frames.append(decode(path, bounds[index], bounds[index + 1], source))
        written.read_ready()
        index += 1
        if index > len(bounds) - 2 or not claims.take(index):
            return frames


def _start_helper(
    decode: RangeDecoder, path: Path, source: str, folder: Path, bounds: list[int]
) -> subprocess.Popen[bytes]:
    """The helper process, decoding chunks from the last one back."""
    target = f"{decode.__module__}:{decode.__qualname__}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(entry for entry in sys.path if entry)}
    with (folder / "stderr").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", _HELPER, target, str(path.absolute()), source, str(folder)]
            + [str(bound) for bound in bounds],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )


def serve(argv: list[str]) -> int:
    """The helper's side: decode chunks from the last one back until they are all claimed.

    After a bad line it keeps going back (an earlier chunk may hold an earlier bad line) and
    keeps the message of the earliest; frames are no longer written then.
    """
    target, path_text, source, folder_text, *bound_texts = argv
    module, name = target.split(":")
    decode: RangeDecoder = getattr(importlib.import_module(module), name)
    path, folder = Path(path_text), Path(folder_text)
    bounds = [int(text) for text in bound_texts]
    claims = _Claims(folder)
    failed = False
    index = len(bounds) - 2
    while True:
        try:
            frame = decode(path, bounds[index], bounds[index + 1], source)
        except ValueError as exc:
            (folder / _ERROR).write_text(str(exc), "utf-8", "surrogateescape")
            failed = True
        else:
            if not failed:
                _write_frame(frame, folder / f"{index}.arrow")
        index -= 1
        if index < 0 or not claims.take(index):
            return 0


def _write_frame(frame: pl.DataFrame, path: Path) -> None:
    """Write the frame as Arrow IPC under a temporary name, then rename it: never seen half done.

    The oldest format (offsets, not string views) is smaller here and quicker both ways.
    """
    partial = path.with_name(path.name + ".part")
    frame.write_ipc(partial, compat_level=pl.CompatLevel.oldest())
    partial.rename(path)
