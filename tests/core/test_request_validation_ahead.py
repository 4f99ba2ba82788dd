"""Tests for reading ahead: the text scan of the next chunk starts before this chunk is done."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_assets.core.limits import EMBEDDINGS, BatchLimits
from batch_assets.core.request_scan import RequestScanner
from batch_assets.core.request_validation import (
    RequestValidationError,
    iter_validated_lines,
    validate_jsonl_file,
)
from tests.core.strategies import property_settings
from tests.core.test_request_validation_properties import request_lines

CHAT = "/v1/chat/completions"


def line(index: int, content: str = "hi", model: Any = "m") -> str:
    """A valid chat request in the usual key order (unless `model` is not a string)."""
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return json.dumps({"custom_id": f"r{index}", "method": "POST", "url": CHAT, "body": body})


def chunk(*lines: str) -> bytes:
    return "".join(text + "\n" for text in lines).encode()


def test_a_scan_read_ahead_serves_only_the_chunk_it_was_started_for() -> None:
    scanner = RequestScanner(CHAT, BatchLimits())
    plain = chunk(line(0), line(1), line(2))
    # The same layout, with a number beyond a double that msgspec skips unread: only the text
    # scan (its exponent check) sends the line to the precise path.
    beyond = plain.replace(
        b'"content": "hi"}]}}\n{"custom_id": "r1"', b'"content": 1e400}]}}\n{"custom_id": "r1"', 1
    )
    assert beyond != plain
    fresh = RequestScanner(CHAT, BatchLimits()).scan(beyond)
    assert fresh is not None and fresh.suspects == [0]
    first = scanner.scan(plain, following=plain)
    assert first is not None and first.suspects == []
    other = scanner.scan(beyond)  # not the chunk read ahead: scanned anew
    assert other is not None and other.suspects == [0]


def test_a_scan_read_ahead_gives_what_a_fresh_scan_gives() -> None:
    scanner = RequestScanner(CHAT, BatchLimits())
    first = chunk(line(0), line(1))
    second = chunk(line(2, content="1e5 \\u00e9"), line(3, content="x"))
    assert scanner.scan(first, following=second) is not None
    ahead = scanner.scan(second)
    fresh = RequestScanner(CHAT, BatchLimits()).scan(second)
    assert ahead is not None and fresh is not None
    assert (ahead.custom_ids, ahead.models, ahead.suspects, ahead.n_bytes) == (
        fresh.custom_ids,
        fresh.models,
        fresh.suspects,
        fresh.n_bytes,
    )


def test_a_line_too_large_read_ahead_comes_after_an_earlier_problem(tmp_path: Path) -> None:
    big = line(3, content="x" * 2000)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(chunk(line(0), line(1, model=5), big))
    limits = BatchLimits(max_bytes=1000)
    with pytest.raises(RequestValidationError) as caught:
        validate_jsonl_file(path, endpoint=CHAT, limits=limits, chunk_bytes=150)
    assert (caught.value.line, caught.value.field) == (2, "body.model")
    path.write_bytes(chunk(line(0), line(1), line(2), big))
    with pytest.raises(RequestValidationError) as caught:
        validate_jsonl_file(path, endpoint=CHAT, limits=limits, chunk_bytes=150)
    assert (caught.value.line, caught.value.code) == (4, "line_too_large")


def test_a_bad_batch_read_ahead_comes_after_an_earlier_problem() -> None:
    broken = line(3).replace('"hi"', '"h\ni"')
    items = [line(0), line(1, model=5), broken]
    with pytest.raises(RequestValidationError) as caught:
        list(iter_validated_lines(items, endpoint=CHAT, chunk_bytes=100))
    assert (caught.value.line, caught.value.field) == (2, "body.model")


def test_frames_before_a_bad_batch_read_ahead_are_all_yielded() -> None:
    broken = line(3).replace('"hi"', '"h\ni"')
    items = [line(0), line(1), line(2), broken]
    frames = []
    with pytest.raises(RequestValidationError) as caught:
        for frame in iter_validated_lines(items, endpoint=CHAT, chunk_bytes=100):
            frames.append(frame)
    assert (caught.value.line, caught.value.code) == (4, "invalid_line")
    assert [row for frame in frames for row in frame["custom_id"]] == ["r0", "r1", "r2"]


def what_it_read(scanned: Any) -> Any:
    """What a scan found, to compare scans."""
    if scanned is None:
        return None
    return (
        scanned.n_rows,
        scanned.n_bytes,
        scanned.custom_ids,
        scanned.models,
        scanned.embedding_inputs,
        scanned.suspects,
        None if scanned.split is None else scanned.split.to_list(),
    )


@property_settings(60)
@given(st.data())
def test_scans_read_ahead_agree_with_fresh_scans(data: st.DataObject) -> None:
    endpoint = data.draw(st.sampled_from([CHAT, EMBEDDINGS]))
    lines = data.draw(request_lines(endpoint))
    size = data.draw(st.integers(1, 4))
    with_lines = data.draw(st.booleans())
    chunks = [
        b"".join(raw + b"\n" for raw in lines[start : start + size])
        for start in range(0, len(lines), size)
    ]
    limits = BatchLimits(max_bytes=data.draw(st.sampled_from([300, 1 << 20])))
    scanner = RequestScanner(endpoint, limits)
    for index, current in enumerate(chunks):
        following = chunks[index + 1] if index + 1 < len(chunks) else None
        ahead = scanner.scan(current, with_lines=with_lines, following=following)
        fresh = RequestScanner(endpoint, limits).scan(current, with_lines=with_lines)
        assert what_it_read(ahead) == what_it_read(fresh)
