"""Property tests: the parser, in one process and split across two, against its former self.

tests/core/reference_output_parsing.py is the single-process parser as it was before issue 15.
For any file of output and error lines (well-typed or not, blank lines, CRLF ends, lines that
are not JSON), today's parser gives an equal frame, or raises the same error, whether it decodes
the file alone or with a helper process (`split_bytes=1` forces the split on small files).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_assets.core.output_parsing import parse_batch_file
from tests.core import reference_output_parsing as reference
from tests.core.strategies import property_settings
from tests.core.test_output_parsing_properties import SURROGATE, lines

# Lines that are not JSON: cut short, a bad literal, not UTF-8, a lone word.
NOT_JSON = st.sampled_from([b'{"custom_id": "b", ', b'{"id": tru}', b"\xff\xfe{}", b"nope"])
ENDS = st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \n"])


@st.composite
def files(draw: st.DrawFn, bad_lines: bool) -> bytes:
    """The bytes of an output file: lines of any endpoint, maybe a few that are not JSON."""
    typed = draw(st.booleans())
    raw = []
    for item in draw(st.lists(lines(typed), max_size=12)):
        text = json.dumps(item, ensure_ascii=False)
        if SURROGATE.search(text) or draw(st.booleans()):  # UTF-8 cannot hold a surrogate
            text = json.dumps(item)
        raw.append(text.encode())
    if bad_lines:
        for bad in draw(st.lists(NOT_JSON, max_size=2)):
            raw.insert(draw(st.integers(0, len(raw))), bad)
    return b"".join(line + draw(ENDS) for line in raw)


def outcome(parse: Any, path: Path, **options: Any) -> pl.DataFrame | str:
    """The frame a parser gives, or the message of the ValueError it raises."""
    try:
        return parse(path, batch_id="batch_1", **options)  # type: ignore[no-any-return]
    except ValueError as exc:
        return str(exc)


def assert_same(got: pl.DataFrame | str, expected: pl.DataFrame | str) -> None:
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, pl.DataFrame)
        assert got.schema == expected.schema
        assert got.equals(expected)


def parsed_both_ways(content: bytes, **options: Any) -> tuple[Any, Any]:
    """(today's outcome with `options`, the reference's outcome) for a file of `content`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "output.jsonl"
        path.write_bytes(content)
        return outcome(parse_batch_file, path, **options), outcome(reference.parse_batch_file, path)


@property_settings(100)
@given(content=files(bad_lines=True))
def test_one_process_gives_the_reference_outcome(content: bytes) -> None:
    assert_same(*parsed_both_ways(content))


@property_settings(25)
@given(content=files(bad_lines=True))
def test_two_processes_give_the_reference_outcome(content: bytes) -> None:
    assert_same(*parsed_both_ways(content, split_bytes=1))


@pytest.mark.parametrize("where", ["first", "last", "both"])
def test_the_first_bad_line_is_named_wherever_it_falls(tmp_path: Path, where: str) -> None:
    good = [json.dumps({"custom_id": f"c{i}", "error": {"code": "x"}}).encode() for i in range(40)]
    if where in ("first", "both"):
        good[3] = b"nope"
    if where in ("last", "both"):
        good[-1] = b'{"custom_id": '  # the helper's first chunk
    path = tmp_path / "output.jsonl"
    path.write_bytes(b"\n".join(good) + b"\n")
    expected = outcome(reference.parse_batch_file, path)
    assert isinstance(expected, str)
    assert outcome(parse_batch_file, path, split_bytes=1) == expected
    assert f"line {4 if where != 'last' else 40} is not valid JSON" in expected
