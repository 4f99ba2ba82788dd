"""The msgspec fast path against the polars one it replaced (tests/core/reference_validation.py):
the same frames, the same summaries and the same first error (message, line, field, code)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tests.core.reference_validation as reference
from batch_assets.core import request_validation as ours
from batch_assets.core.limits import EMBEDDINGS, MODERATIONS, BatchLimits
from batch_assets.core.request_scan import RequestScanner
from batch_assets.core.request_validation import RequestValidationError
from tests.core.strategies import property_settings
from tests.core.test_request_validation_properties import FAULTS, TRAPS, request_lines

CHAT = "/v1/chat/completions"
SETTINGS = property_settings(60)
Outcome = tuple[pl.DataFrame | None, tuple[str, int | None, str | None, str] | None]


def collect(frames: Callable[[], Iterator[pl.DataFrame]]) -> Outcome:
    """Every frame yielded (concatenated), and the error raised (message, line, field, code)."""
    got: list[pl.DataFrame] = []
    problem: tuple[str, int | None, str | None, str] | None
    try:
        for frame in frames():
            got.append(frame)
    except RequestValidationError as error:
        problem = (str(error), error.line, error.field, error.code)
    else:
        problem = None
    return (pl.concat(got) if got else None), problem


def summarize(run: Callable[[], ours.ValidationSummary]) -> Any:
    """A summary's figures, or the error's (message, line, field, code)."""
    try:
        summary = run()
    except RequestValidationError as error:
        return str(error), error.line, error.field, error.code
    return summary.n_requests, summary.n_bytes, summary.models, summary.embedding_inputs


def assert_same(expected: Outcome, got: Outcome) -> None:
    assert got[1] == expected[1]
    if expected[0] is None:
        assert got[0] is None
    else:
        assert got[0] is not None
        assert got[0].schema == expected[0].schema
        assert got[0].equals(expected[0])


def assert_file_agrees(data: bytes, endpoint: str, limits: BatchLimits, chunk_bytes: int) -> None:
    """Frames, summary and error of a file: ours as the reference's."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "requests.jsonl"
        path.write_bytes(data)
        options: dict[str, Any] = {
            "endpoint": endpoint,
            "limits": limits,
            "chunk_bytes": chunk_bytes,
        }
        expected = collect(lambda: reference.iter_validated_file(path, **options))
        assert_same(expected, collect(lambda: ours.iter_validated_file(path, **options)))
        assert summarize(lambda: ours.validate_jsonl_file(path, **options)) == summarize(
            lambda: reference.validate_jsonl_file(path, **options)
        )


LIMITS = st.builds(
    BatchLimits,
    max_bytes=st.sampled_from([120, 400, 10_000]),
    max_embedding_inputs=st.integers(1, 4),
)


@SETTINGS
@pytest.mark.parametrize("faults", [FAULTS, TRAPS], ids=["faults", "traps"])
@pytest.mark.parametrize("endpoint", [CHAT, EMBEDDINGS, MODERATIONS])
@given(data=st.data())
def test_files_give_the_reference_frames_and_errors(
    endpoint: str, faults: list[str], data: st.DataObject
) -> None:
    raws = data.draw(request_lines(endpoint, faults))
    limits = data.draw(LIMITS)
    chunk_bytes = data.draw(st.sampled_from([64, 700, 1 << 20]))
    assert_file_agrees(b"".join(raw + b"\n" for raw in raws), endpoint, limits, chunk_bytes)


@SETTINGS
@pytest.mark.parametrize("faults", [FAULTS, TRAPS], ids=["faults", "traps"])
@pytest.mark.parametrize("endpoint", [CHAT, EMBEDDINGS, MODERATIONS])
@given(data=st.data())
def test_lines_give_the_reference_frames_and_errors(
    endpoint: str, faults: list[str], data: st.DataObject
) -> None:
    raws = data.draw(request_lines(endpoint, faults))
    limits = data.draw(LIMITS)
    as_text = data.draw(st.booleans())
    items: list[Any] = raws
    if as_text:  # lines as str where they are valid UTF-8
        items = [raw.decode("utf-8", "surrogatepass") for raw in raws if _is_utf8(raw)]
    options: dict[str, Any] = {"endpoint": endpoint, "limits": limits}
    expected = collect(lambda: reference.iter_validated_lines(items, **options))
    assert_same(expected, collect(lambda: ours.iter_validated_lines(items, **options)))
    assert summarize(lambda: ours.validate_request_lines(items, **options)) == summarize(
        lambda: reference.validate_request_lines(items, **options)
    )


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def usual_line(index: int, endpoint: str = CHAT, content: str = "hi", model: str = "m") -> str:
    """A valid request in the usual key order, as `json.dumps` writes it."""
    body: dict[str, Any] = {"model": model}
    if endpoint == EMBEDDINGS:
        body["input"] = [content, content]
    else:
        body["messages"] = [{"role": "user", "content": content}]
    request = {"custom_id": f"r{index}", "method": "POST", "url": endpoint, "body": body}
    return json.dumps(request, ensure_ascii=False)


# Ways to write a file of usual lines wrongly that a count of keys and lines per chunk could miss
# if it were the only check: each turns valid lines into invalid ones without changing how many
# requests decode or how many keys the text holds.
LAYOUT_EDITS = {
    # a request broken over two lines at a space, and two requests on one line
    "split and joined": lambda lines: [
        lines[0].replace(', "method"', ',\n"method"', 1),
        lines[1] + " " + lines[2],
        *lines[3:],
    ],
    # two requests on one line with nothing between them, and a blank line
    "joined and blank": lambda lines: [lines[0] + lines[1], "", *lines[2:]],
    # a request broken after its body's '{', and one line holding a watched key twice
    "split in body and twice": lambda lines: [
        lines[0].replace('{"model"', '{\n"model"', 1),
        lines[1].replace('"model"', '"model": "x", "model"', 1),
        *lines[2:],
    ],
    # one request without its custom_id, one with it twice
    "moved key": lambda lines: [
        lines[0].replace('"custom_id": "r0", ', "", 1),
        lines[1].replace('"method"', '"custom_id": "r0", "method"', 1),
        *lines[2:],
    ],
    # a key written with an escape, and a key twice
    "escaped and twice": lambda lines: [
        lines[0].replace('"url"', '"\\u0075rl"', 1),
        lines[1].replace('"url"', '"url": "/v1/x", "url"', 1),
        *lines[2:],
    ],
    # a first line in another order, naming a key twice (the heads of the other lines vouch)
    "first reordered and twice": lambda lines: [
        lines[0].replace(
            '"custom_id": "r0", "method": "POST"',
            '"method": "POST", "custom_id": "r0", "custom_id": "r0"',
            1,
        ),
        *lines[1:],
    ],
    # CRLF line ends, and spaces around a line
    "crlf": lambda lines: [line + "\r" for line in lines],
    "leading space": lambda lines: [" " + lines[0], *lines[1:]],
    "trailing space": lambda lines: [lines[0] + " ", *lines[1:]],
}


@pytest.mark.parametrize("edit", LAYOUT_EDITS)
@pytest.mark.parametrize("endpoint", [CHAT, EMBEDDINGS, MODERATIONS])
@pytest.mark.parametrize("chunk_bytes", [300, 1 << 20])
def test_layout_edits_give_the_reference_answer(edit: str, endpoint: str, chunk_bytes: int) -> None:
    lines = [usual_line(index, endpoint) for index in range(6)]
    edited = LAYOUT_EDITS[edit](lines)
    data = "".join(line + "\n" for line in edited).encode()
    assert_file_agrees(data, endpoint, BatchLimits(), chunk_bytes)


@pytest.mark.parametrize(
    ("edit", "line", "field", "code"),
    [
        ("split and joined", 1, None, "invalid_json_line"),
        ("joined and blank", 1, None, "invalid_json_line"),
        ("split in body and twice", 1, None, "invalid_json_line"),
        ("moved key", 1, "custom_id", "missing_required_parameter"),
        ("escaped and twice", 2, "url", "duplicate_key"),
        ("first reordered and twice", 1, "custom_id", "duplicate_key"),
    ],
)
def test_layout_edits_name_the_first_bad_line(
    tmp_path: Path, edit: str, line: int, field: str | None, code: str
) -> None:
    lines = [usual_line(index) for index in range(6)]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(text + "\n" for text in LAYOUT_EDITS[edit](lines)))
    with pytest.raises(RequestValidationError) as caught:
        ours.validate_jsonl_file(path, endpoint=CHAT)
    assert (caught.value.line, caught.value.field, caught.value.code) == (line, field, code)


@pytest.mark.parametrize("endpoint", [CHAT, EMBEDDINGS, MODERATIONS])
def test_a_body_input_given_twice_is_refused_on_every_endpoint(endpoint: str) -> None:
    # The polars fast path only watched body.input on embeddings; the precise path always did.
    lines = [usual_line(index, endpoint) for index in range(3)]
    lines[1] = lines[1].replace('"model"', '"input": "a", "input": "b", "model"', 1)
    with pytest.raises(RequestValidationError) as caught:
        ours.validate_request_lines(lines, endpoint=endpoint)
    assert (caught.value.line, caught.value.field, caught.value.code) == (
        2,
        "body.input",
        "duplicate_key",
    )


@pytest.mark.parametrize(
    "number",
    ["1e400", "-1E+400", "1" + "0" * 300 + "e10", "9" * 309, "17976931348623159e292"],
)
def test_numbers_beyond_a_double_the_typed_decoder_skips_are_refused(number: str) -> None:
    # msgspec does not check the range of values it skips (here body.seed); the scans must.
    lines = [usual_line(index) for index in range(3)]
    lines[2] = lines[2].replace('"messages"', f'"seed": {number}, "messages"', 1)
    with pytest.raises(RequestValidationError) as caught:
        ours.validate_request_lines(lines, endpoint=CHAT)
    assert (caught.value.line, caught.value.field, caught.value.code) == (
        3,
        "body.seed",
        "invalid_json_line",
    )


def test_invalid_utf8_in_a_value_the_decoder_skips_is_refused(tmp_path: Path) -> None:
    lines = [usual_line(index).encode() for index in range(3)]
    lines[1] = lines[1].replace(b'"hi"', b'"h\xed\xa0\x80i"', 1)  # an encoded surrogate
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    with pytest.raises(RequestValidationError) as caught:
        ours.validate_jsonl_file(path, endpoint=CHAT)
    assert (caught.value.line, caught.value.code) == (2, "invalid_utf8")
    assert "byte 0xed" in str(caught.value)


def test_usual_lines_take_the_fast_path_and_others_the_line_by_line_checks() -> None:
    scanner = RequestScanner(CHAT, BatchLimits())
    usual = "".join(usual_line(index, content="日本 é") + "\n" for index in range(50)).encode()
    fast = scanner.scan(usual)
    assert fast is not None
    assert fast.split is None  # the lines were never split: the heads vouched for them
    assert fast.suspects == []
    assert fast.n_bytes == len(usual) - 50
    permuted = usual.replace(b'"method": "POST", ', b"").replace(b"]}}", b']}, "method": "POST"}')
    slow = scanner.scan(permuted)
    assert slow is not None
    assert slow.split is not None
    assert slow.suspects == []
    assert slow.custom_ids == fast.custom_ids
