"""Tests for decoding an output file in two processes (batch_assets.core.output_split)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from batch_assets.core.output_parsing import decode_range, parse_batch_file
from batch_assets.core.output_split import chunk_bounds, decode_in_two_processes, serve
from tests.core import reference_output_parsing as reference
from tests.core.strategies import property_settings

PARENT_PID = "OUTPUT_SPLIT_TEST_PARENT_PID"


@pytest.fixture(autouse=True)
def parent_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tell decode_here_only which process is the test's (the helper inherits the variable)."""
    monkeypatch.setenv(PARENT_PID, str(os.getpid()))


def output_line(index: int) -> bytes:
    """A short answered chat line."""
    body = {"model": "m", "choices": [{"message": {"content": f"answer {index}"}}]}
    item = {"id": f"r{index}", "custom_id": f"c{index}", "response": {"status_code": 200}}
    item["response"]["body"] = body  # type: ignore[index]
    return json.dumps(item).encode()


def write_lines(path: Path, raw: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def decode_here_only(path: Path, start: int, end: int, source: str) -> pl.DataFrame:
    """A decoder that kills the helper process that runs it (the test's process has no
    HELPER_PARENT_PID set)."""
    if os.environ.get(PARENT_PID) not in (None, str(os.getpid())):
        sys.stderr.write("the helper crashed\n")
        sys.stderr.flush()
        os._exit(3)
    return decode_range(path, start, end, source)


def decode_past_the_start_fails(path: Path, start: int, end: int, source: str) -> pl.DataFrame:
    """A decoder for the helper to import that fails on every chunk but the file's first."""
    if start > 0:
        raise RuntimeError("this decoder reads only the first chunk")
    return decode_range(path, start, end, source)


def decode_first_chunk_last(path: Path, start: int, end: int, source: str) -> pl.DataFrame:
    """A decoder that leaves every chunk but the first to the helper: on the first chunk it waits
    until the helper has decoded the second (which it does last), as a marker file tells."""
    frame = decode_range(path, start, end, source)
    if start > 0:
        (path.parent / f"decoded-{start}").touch()
        return frame
    deadline = time.monotonic() + 120  # only a guard against hanging if the helper died
    while not (path.parent / f"decoded-{end}").exists():
        assert time.monotonic() < deadline, "the helper never decoded the second chunk"
        time.sleep(0.01)
    return frame


@property_settings(100)
@given(
    content=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r\n", b" "]), max_size=60).map(
        b"".join
    ),
    chunks=st.integers(1, 70),
)
@example(content=b"aa\naa\naa\na", chunks=3)  # chunks of size // chunks bytes would make 4
def test_chunk_bounds_cut_at_line_ends(tmp_path_factory: pytest.TempPathFactory, content: bytes,
                                       chunks: int) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("bounds") / "file.jsonl"
    path.write_bytes(content)
    bounds = chunk_bounds(path, chunks)
    assert bounds[0] == 0 and bounds[-1] == len(content)
    assert all(a < b for a, b in itertools.pairwise(bounds))
    assert all(content[bound - 1 : bound] == b"\n" for bound in bounds[1:-1])
    assert len(bounds) - 1 <= chunks


def test_the_helper_decodes_from_the_back_until_the_claimed_front(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "output.jsonl", [output_line(i) for i in range(30)])
    bounds = chunk_bounds(path, 10)
    folder = tmp_path / "scratch"
    folder.mkdir()
    (folder / "3.claim").touch()  # this process got as far as chunk 3
    assert serve([f"{decode_range.__module__}:decode_range", str(path), "o", str(folder)]
                 + [str(bound) for bound in bounds]) == 0  # fmt: skip
    written = sorted(int(p.name.split(".")[0]) for p in folder.glob("*.arrow"))
    assert written == list(range(4, len(bounds) - 1))
    for index in written:
        frame = pl.read_ipc(folder / f"{index}.arrow")
        assert frame.equals(decode_range(path, bounds[index], bounds[index + 1], "o"))
    assert not (folder / "error").exists()


def test_the_helper_keeps_the_earliest_bad_line(tmp_path: Path) -> None:
    raw = [output_line(i) for i in range(30)]
    raw[12], raw[25] = b"nope", b"{"
    path = write_lines(tmp_path / "output.jsonl", raw)
    bounds = chunk_bounds(path, 10)
    folder = tmp_path / "scratch"
    folder.mkdir()
    (folder / "0.claim").touch()
    serve([f"{decode_range.__module__}:decode_range", str(path), "output.jsonl", str(folder)]
          + [str(bound) for bound in bounds])  # fmt: skip
    with pytest.raises(ValueError) as expected:
        reference.parse_batch_file(path)
    assert (folder / "error").read_text() == str(expected.value)
    assert "line 13 is not valid JSON" in str(expected.value)
    # frames only of the chunks decoded before the helper met a bad line: those after line 26
    after_26 = sum(len(line) + 1 for line in raw[:26])
    written = sorted(int(p.name.split(".")[0]) for p in folder.glob("*.arrow"))
    assert written == [i for i in range(1, len(bounds) - 1) if bounds[i] >= after_26]
    assert written


class Collected(logging.Handler):
    """The messages logged to it."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_chunks_of_a_failed_helper_are_decoded_here(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "output.jsonl", [output_line(i) for i in range(40)])
    logger, collected = logging.getLogger("batch_assets.core.output_split"), Collected()
    logger.addHandler(collected)
    try:
        frames = decode_in_two_processes(path, "output.jsonl", decode_here_only, chunks=8)
    finally:
        logger.removeHandler(collected)
    assert pl.concat(frames).equals(decode_range(path, 0, path.stat().st_size, "output.jsonl"))
    [warning] = collected.messages
    assert "the helper process decoding the file failed" in warning
    assert "the helper crashed" in warning  # its stderr, for whoever reads the log


def test_a_bad_line_is_named_when_the_helper_failed(tmp_path: Path) -> None:
    raw = [output_line(i) for i in range(40)]
    raw[30] = b"not json"
    path = write_lines(tmp_path / "output.jsonl", raw)
    with pytest.raises(ValueError) as raised:
        decode_in_two_processes(path, "output.jsonl", decode_here_only, chunks=8)
    with pytest.raises(ValueError) as expected:
        decode_range(path, 0, path.stat().st_size, "output.jsonl")
    assert str(raised.value) == str(expected.value)


def test_two_processes_keep_the_file_order(tmp_path: Path) -> None:
    raw = [output_line(i) for i in range(500)]
    raw[7:7] = [b"", b"  ", b""]  # blank lines in between, and no line end at the end
    path = tmp_path / "output.jsonl"
    path.write_bytes(b"\r\n".join(raw))
    frames = decode_in_two_processes(path, "output.jsonl", decode_range, chunks=16)
    assert len(frames) == 16
    frame = pl.concat(frames)
    assert frame["custom_id"].to_list() == [f"c{i}" for i in range(500)]
    assert parse_batch_file(path, batch_id="b", split_bytes=1).equals(
        reference.parse_batch_file(path, batch_id="b")
    )


def test_frames_of_many_helper_chunks_come_in_file_order(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "output.jsonl", [output_line(i) for i in range(200)])
    frames = decode_in_two_processes(path, "output.jsonl", decode_first_chunk_last, chunks=20)
    assert len(frames) == 20
    assert len(list(tmp_path.glob("decoded-*"))) == 19  # the helper decoded all but the first
    frame = pl.concat(frames)
    assert frame["custom_id"].to_list() == [f"c{i}" for i in range(200)]
    assert frame.equals(decode_range(path, 0, path.stat().st_size, "output.jsonl"))


def test_a_single_chunk_is_decoded_here(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "output.jsonl", [output_line(0)])
    frames = decode_in_two_processes(path, "output.jsonl", decode_past_the_start_fails)
    assert pl.concat(frames)["custom_id"].to_list() == ["c0"]
