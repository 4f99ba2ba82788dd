"""The single-process output parser as it was before issue 15, kept as the reference.

`batch_assets.core.output_parsing` must give the same frames (tests/core/
test_output_parsing_reference.py): this is the reading loop of commit af086a0 (the whole file in
pieces, every column built value by value), on the record shapes and the per-line decoding of
the module itself, which issue 15 left as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from batch_assets.core.output_parsing import (
    _COLUMNS,
    _FRAME_ROWS,
    _LINES,
    _READ_BYTES,
    RESULT_SCHEMA,
    _add_columns,
    _decode_slowly,
    _gc_paused,
    _line_number,
    empty_results,
)


def _chunks(path: Path) -> Iterator[tuple[memoryview, int]]:
    """The file in pieces of whole lines, with the byte offset each starts at."""
    with path.open("rb") as stream:
        buffer = bytearray(_READ_BYTES)
        filled = offset = 0
        while True:
            read = stream.readinto(memoryview(buffer)[filled:])
            filled += read
            cut = buffer.rfind(b"\n", 0, filled) + 1 if read else filled
            if cut == 0 and read:
                if filled == len(buffer):  # a line longer than the buffer
                    buffer.extend(bytes(len(buffer)))
                continue
            if cut:
                with memoryview(buffer)[:cut] as piece:
                    yield piece, offset
                offset += cut
                buffer[: filled - cut] = buffer[cut:filled]
                filled -= cut
            if not read:
                return


def parse_batch_file(
    path: str | Path | None, *, batch_id: str | None = None, name: str | None = None
) -> pl.DataFrame:
    """Parse an output or error file into a frame of RESULT_SCHEMA, a piece at a time.

    `name` is the file's name in error messages (the file's own name by default).
    """
    if path is None or not Path(path).exists() or Path(path).stat().st_size == 0:
        return empty_results()
    path = Path(path)
    frames: list[pl.DataFrame] = []
    columns: list[list[Any]] = [[] for _ in _COLUMNS]

    def flush() -> None:
        series = [
            pl.Series(name, values, dtype=RESULT_SCHEMA[name])
            for name, values in zip(_COLUMNS, columns, strict=True)
        ]
        frames.append(pl.DataFrame(series))
        for values in columns:
            values.clear()

    with _gc_paused():
        for data, offset in _chunks(path):
            try:
                lines = _LINES.decode_lines(data)
            except msgspec.MsgspecError:
                lines = _decode_slowly(bytes(data), _line_number(path, offset), name or path.name)
            _add_columns(lines, columns)
            del lines
            if len(columns[0]) >= _FRAME_ROWS:
                flush()
        flush()
    return pl.concat(frames).select(
        _COLUMNS[0], pl.lit(batch_id, dtype=pl.String).alias("batch_id"), *_COLUMNS[1:]
    )
