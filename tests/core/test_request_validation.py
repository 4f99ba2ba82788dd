"""Tests for request validation: every bad-input kind, and the fast path against a reference."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from batch_assets.core.limits import BatchLimits
from batch_assets.core.request_validation import (
    RequestValidationError,
    check_request,
    count_embedding_inputs,
    iter_validated_file,
    parse_request_line,
    validate_jsonl_file,
    validate_request_lines,
)

CHAT = "/v1/chat/completions"


def request(index: int, **changes: Any) -> dict[str, Any]:
    """A valid chat request; `changes` replace top-level keys (None deletes) or body keys."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hello {index}"}]}
    line: dict[str, Any] = {
        "custom_id": f"req-{index}",
        "method": "POST",
        "url": CHAT,
        "body": body,
    }
    for key, value in changes.items():
        target, name = (body, key[5:]) if key.startswith("body_") else (line, key)
        if value is _DELETE:
            del target[name]
        else:
            target[name] = value
    return line


_DELETE = object()


def jsonl(*lines: str | dict[str, Any]) -> bytes:
    """File content: dicts are dumped, strings taken as they are; every line ends in LF."""
    return "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines).encode()


def good(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [request(i) for i in range(start, start + n)]


def write(tmp_path: Path, content: bytes, name: str = "requests.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


# (content, line, field, code, words the message must hold)
BAD_FILES: dict[str, tuple[bytes, int | None, str | None, str, tuple[str, ...]]] = {
    "invalid json": (
        jsonl(*good(2), '{"custom_id": "x", "method": "POST"', *good(1, 5)),
        3,
        None,
        "invalid_json_line",
        ("invalid JSON",),
    ),
    "single quotes": (jsonl("{'custom_id': 'x'}"), 1, None, "invalid_json_line", ("JSON",)),
    "trailing comma": (
        jsonl(request(0), json.dumps(request(1))[:-1] + ",}"),
        2,
        None,
        "invalid_json_line",
        ("invalid JSON",),
    ),
    "nan": (
        jsonl(request(0), json.dumps(request(1, body_temperature=float("nan")))),
        2,
        None,
        "invalid_json_line",
        ("NaN",),
    ),
    "not an object": (jsonl(request(0), "[1, 2]"), 2, None, "invalid_request", ("object",)),
    "non-utf8": (
        jsonl(request(0)) + b'{"custom_id": "caf\xe9"}\n',
        2,
        None,
        "invalid_utf8",
        ("UTF-8", "0xe9"),
    ),
    "bom": (b"\xef\xbb\xbf" + jsonl(*good(2)), 1, None, "invalid_json_line", ("byte order mark",)),
    "bom on a later line": (
        jsonl(request(0)) + b"\xef\xbb\xbf" + jsonl(request(1)),
        2,
        None,
        "invalid_json_line",
        ("byte order mark",),
    ),
    "blank line": (jsonl(*good(2), "", *good(2, 2)), 3, None, "blank_line", ("blank",)),
    "whitespace line": (jsonl(*good(2), " \t ", *good(2, 2)), 3, None, "blank_line", ("blank",)),
    "blank crlf line": (
        jsonl(request(0)).replace(b"\n", b"\r\n") + b"\r\n" + jsonl(request(1)),
        2,
        None,
        "blank_line",
        ("blank",),
    ),
    "trailing blank line": (jsonl(*good(3)) + b"\n", 4, None, "blank_line", ("blank",)),
    "custom_id missing": (
        jsonl(*good(3), request(9, custom_id=_DELETE)),
        4,
        "custom_id",
        "missing_required_parameter",
        ("missing",),
    ),
    "custom_id number": (
        jsonl(request(0), request(9, custom_id=17)),
        2,
        "custom_id",
        "invalid_request",
        ("non-empty string", "number 17"),
    ),
    "custom_id true": (
        jsonl(request(0), request(9, custom_id=True)),
        2,
        "custom_id",
        "invalid_request",
        ("true",),
    ),
    "custom_id null": (
        jsonl(request(0), request(9, custom_id=None)),
        2,
        "custom_id",
        "invalid_request",
        ("null",),
    ),
    "custom_id empty": (
        jsonl(request(0), request(9, custom_id="")),
        2,
        "custom_id",
        "invalid_request",
        ("''",),
    ),
    "custom_id list": (
        jsonl(request(0), request(9, custom_id=["a"])),
        2,
        "custom_id",
        "invalid_request",
        ("array",),
    ),
    "custom_id lone surrogate": (
        jsonl(
            request(0),
            '{"custom_id": "a\\ud800", "method": "POST", "url": "/v1/chat/completions", '
            '"body": {"model": "m"}}',
        ),
        2,
        "custom_id",
        "invalid_request",
        ("surrogate",),
    ),
    "method get": (
        jsonl(request(0), request(1, method="GET")),
        2,
        "method",
        "invalid_request",
        ("'POST'", "'GET'"),
    ),
    "method missing": (
        jsonl(request(0), request(1, method=_DELETE)),
        2,
        "method",
        "missing_required_parameter",
        ("missing",),
    ),
    "url mismatch": (
        jsonl(*good(16), request(16, url="/v1/embeddings")),
        17,
        "url",
        "url_mismatch",
        ("expected '/v1/chat/completions', got '/v1/embeddings'",),
    ),
    "url missing": (
        jsonl(request(0, url=_DELETE)),
        1,
        "url",
        "missing_required_parameter",
        ("missing",),
    ),
    "body missing": (
        jsonl(request(0), request(1, body=_DELETE)),
        2,
        "body",
        "missing_required_parameter",
        ("missing",),
    ),
    "body string": (
        jsonl(request(0), request(1, body="hi")),
        2,
        "body",
        "invalid_request",
        ("object", "'hi'"),
    ),
    "body null": (
        jsonl(request(0), request(1, body=None)),
        2,
        "body",
        "invalid_request",
        ("object", "null"),
    ),
    "model missing": (
        jsonl(request(0), request(1, body_model=_DELETE)),
        2,
        "body.model",
        "missing_required_parameter",
        ("missing",),
    ),
    "model number": (
        jsonl(request(0), request(1, body_model=4)),
        2,
        "body.model",
        "invalid_request",
        ("number 4",),
    ),
    "model empty": (
        jsonl(request(0), request(1, body_model="")),
        2,
        "body.model",
        "invalid_request",
        ("non-empty",),
    ),
    "duplicate custom_id": (
        jsonl(*good(3), request(1)),
        4,
        "custom_id",
        "duplicate_custom_id",
        ("'req-1'", "first on line 2"),
    ),
    "duplicate key": (
        jsonl(
            request(0),
            '{"custom_id": "x", "method": "POST", "url": "/v1/embeddings", '
            '"url": "/v1/chat/completions", "body": {"model": "m"}}',
        ),
        2,
        "url",
        "duplicate_key",
        ("more than once",),
    ),
    "duplicate body key": (
        jsonl(
            request(0),
            '{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", '
            '"body": {"model": "m", "model": 5}}',
        ),
        2,
        "body.model",
        "duplicate_key",
        ("more than once",),
    ),
    "escaped key hides a number": (
        jsonl(
            request(0),
            '{"custom\\u005fid": 5, "method": "POST", "url": "/v1/chat/completions", '
            '"body": {"model": "m", "x": {"custom_id": "5"}}}',
        ),
        2,
        "custom_id",
        "invalid_request",
        ("number 5",),
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_file_names_line_and_field(tmp_path: Path, case: str) -> None:
    content, line, field, code, words = BAD_FILES[case]
    path = write(tmp_path, content)
    with pytest.raises(RequestValidationError) as caught:
        validate_jsonl_file(path, endpoint=CHAT)
    error = caught.value
    assert (error.line, error.field, error.code) == (line, field, code), str(error)
    message = str(error)
    assert message.startswith("requests.jsonl: ")
    if line is not None:
        assert f"line {line}" in message
    if field is not None:
        assert f"field {field!r}" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_lines_give_the_same_error_as_the_file(tmp_path: Path, case: str) -> None:
    content, line, field, code, _ = BAD_FILES[case]
    items = content.split(b"\n")[:-1]
    with pytest.raises(RequestValidationError) as caught:
        validate_request_lines(items, endpoint=CHAT)
    assert (caught.value.line, caught.value.field, caught.value.code) == (line, field, code)


def test_error_message_format_matches_the_example() -> None:
    lines = [json.dumps(r) for r in good(16)] + [json.dumps(request(16, url="/v1/embeddings"))]
    with pytest.raises(RequestValidationError) as caught:
        validate_request_lines(lines, endpoint=CHAT, source=None)
    assert str(caught.value) == (
        "line 17: field 'url': expected '/v1/chat/completions', got '/v1/embeddings'"
    )


def test_empty_file_names_the_input(tmp_path: Path) -> None:
    path = write(tmp_path, b"", "nothing.jsonl")
    with pytest.raises(RequestValidationError, match=r"nothing\.jsonl") as caught:
        validate_jsonl_file(path, endpoint=CHAT)
    assert caught.value.code == "empty_file"
    assert caught.value.line is None


def test_empty_lines_input_names_the_source() -> None:
    with pytest.raises(RequestValidationError, match="my generator is empty"):
        validate_request_lines([], endpoint=CHAT, source="my generator")


@pytest.mark.parametrize("chunk_bytes", [64, 300, 1 << 20])
def test_line_too_large(tmp_path: Path, chunk_bytes: int) -> None:
    big = request(3, body_messages=[{"role": "user", "content": "x" * 2000}])
    path = write(tmp_path, jsonl(*good(3), big, request(4)))
    with pytest.raises(RequestValidationError, match="max_bytes") as caught:
        validate_jsonl_file(
            path, endpoint=CHAT, limits=BatchLimits(max_bytes=1000), chunk_bytes=chunk_bytes
        )
    assert caught.value.line == 4
    assert caught.value.code == "line_too_large"


def test_a_line_exactly_at_max_bytes_fits(tmp_path: Path) -> None:
    line = json.dumps(request(0))
    path = write(tmp_path, jsonl(line))
    limits = BatchLimits(max_bytes=len(line) + 1)
    assert validate_jsonl_file(path, endpoint=CHAT, limits=limits).n_requests == 1
    with pytest.raises(RequestValidationError, match="max_bytes"):
        validate_jsonl_file(path, endpoint=CHAT, limits=BatchLimits(max_bytes=len(line)))


def test_crlf_line_ends_are_accepted(tmp_path: Path) -> None:
    content = jsonl(*good(3))
    path = write(tmp_path, content.replace(b"\n", b"\r\n"))
    summary = validate_jsonl_file(path, endpoint=CHAT)
    assert summary.n_requests == 3
    assert summary.n_bytes == len(content)  # counted as they will be written: LF ends


def test_last_line_without_line_end(tmp_path: Path) -> None:
    path = write(tmp_path, jsonl(*good(3))[:-1])
    assert validate_jsonl_file(path, endpoint=CHAT).n_requests == 3


def test_summary(tmp_path: Path) -> None:
    lines = [request(0), request(1, body_model="gpt-4o"), request(2)]
    content = jsonl(*lines)
    summary = validate_jsonl_file(write(tmp_path, content), endpoint=CHAT)
    assert summary.n_requests == 3
    assert summary.n_bytes == len(content)
    assert summary.models == {"gpt-4o-mini": 2, "gpt-4o": 1}


@pytest.mark.parametrize(
    "custom_id", ["../../etc/passwd", "a/b\\c", "CON", " spaced ", "tab\there", "日本", "a" * 500]
)
def test_custom_ids_unsafe_as_file_names_are_fine(custom_id: str) -> None:
    lines = [json.dumps(request(0, custom_id=custom_id)), json.dumps(request(1))]
    assert validate_request_lines(lines, endpoint=CHAT).n_requests == 2


def test_mixed_models_are_not_an_error() -> None:
    lines = [json.dumps(request(i, body_model=f"m{i % 3}")) for i in range(9)]
    assert validate_request_lines(lines, endpoint=CHAT).models == {"m0": 3, "m1": 3, "m2": 3}


def test_moderations_may_omit_the_model() -> None:
    lines = [
        json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/moderations", "body": {}}),
        json.dumps(
            {
                "custom_id": "b",
                "method": "POST",
                "url": "/v1/moderations",
                "body": {"model": "omni-moderation-latest", "input": "x"},
            }
        ),
    ]
    summary = validate_request_lines(lines, endpoint="/v1/moderations")
    assert summary.models == {None: 1, "omni-moderation-latest": 1}


def test_embedding_inputs_are_counted() -> None:
    def embedding(i: int, value: Any) -> str:
        body = {"model": "text-embedding-3-small", "input": value}
        return json.dumps(
            {"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings", "body": body}
        )

    values = ["one", ["a", "b", "c"], [1, 2, 3], [[1, 2], [3]], [], ["x", 5]]
    lines = [embedding(i, v) for i, v in enumerate(values)]
    summary = validate_request_lines(lines, endpoint="/v1/embeddings")
    assert summary.embedding_inputs == 1 + 3 + 1 + 2 + 0 + 2
    with pytest.raises(RequestValidationError) as caught:
        validate_request_lines(
            lines, endpoint="/v1/embeddings", limits=BatchLimits(max_embedding_inputs=2)
        )
    assert (caught.value.line, caught.value.field) == (2, "body.input")


def test_count_embedding_inputs() -> None:
    assert count_embedding_inputs("x") == 1
    assert count_embedding_inputs([1, 2]) == 1
    assert count_embedding_inputs([True, False]) == 2
    assert count_embedding_inputs(["a", "b"]) == 2
    assert count_embedding_inputs(None) == 1


def test_the_first_problem_wins_in_line_order(tmp_path: Path) -> None:
    duplicate_first = jsonl(*good(3), request(0), request(9, url="/v1/embeddings"))
    with pytest.raises(RequestValidationError) as caught:
        validate_jsonl_file(write(tmp_path, duplicate_first), endpoint=CHAT, chunk_bytes=150)
    assert (caught.value.line, caught.value.field) == (4, "custom_id")
    url_first = jsonl(*good(3), request(9, url="/v1/embeddings"), request(0))
    with pytest.raises(RequestValidationError) as caught:
        validate_jsonl_file(write(tmp_path, url_first), endpoint=CHAT, chunk_bytes=150)
    assert (caught.value.line, caught.value.field) == (4, "url")


@pytest.mark.parametrize("chunk_bytes", [1, 100, 1000, 1 << 20])
def test_chunking_keeps_line_numbers(tmp_path: Path, chunk_bytes: int) -> None:
    lines = [*good(30), request(30, body_model=5), *good(5, 31)]
    path = write(tmp_path, jsonl(*lines))
    with pytest.raises(RequestValidationError) as caught:
        validate_jsonl_file(path, endpoint=CHAT, chunk_bytes=chunk_bytes)
    assert (caught.value.line, caught.value.field) == (31, "body.model")
    path = write(tmp_path, jsonl(*good(30), request(2)))
    with pytest.raises(RequestValidationError, match="first on line 3") as caught:
        validate_jsonl_file(path, endpoint=CHAT, chunk_bytes=chunk_bytes)
    assert caught.value.line == 31


def test_file_frames_hold_every_line(tmp_path: Path) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in good(25)]
    path = write(tmp_path, ("\n".join(lines) + "\n").encode())
    frames = list(iter_validated_file(path, endpoint=CHAT, chunk_bytes=500))
    assert len(frames) > 1
    frame = pl.concat(frames)
    assert frame["line"].to_list() == lines
    assert frame["custom_id"].to_list() == [f"req-{i}" for i in range(25)]
    assert frame["n_bytes"].to_list() == [len(line.encode()) for line in lines]


def test_lines_may_come_as_a_series_or_bytes_with_line_ends() -> None:
    lines = [json.dumps(r) for r in good(4)]
    assert validate_request_lines(pl.Series(lines), endpoint=CHAT).n_requests == 4
    with_ends = [(line + "\r\n").encode() for line in lines]
    assert validate_request_lines(with_ends, endpoint=CHAT).n_bytes == sum(
        len(line) + 1 for line in lines
    )


@pytest.mark.parametrize(
    ("items", "line", "words"),
    [
        (["{}", None], 2, "expected a str"),
        (['{"a":\n1}'], 1, "line break"),
        (["\ud800"], 1, "surrogate"),
    ],
)
def test_bad_line_items(items: list[Any], line: int, words: str) -> None:
    with pytest.raises(RequestValidationError, match=words) as caught:
        validate_request_lines(items, endpoint=CHAT)
    assert caught.value.line == line


def test_series_with_nulls_or_line_breaks() -> None:
    with pytest.raises(RequestValidationError, match="null") as caught:
        validate_request_lines(pl.Series([json.dumps(request(0)), None]), endpoint=CHAT)
    assert caught.value.line == 2
    with pytest.raises(TypeError):
        validate_request_lines(pl.Series([1, 2]), endpoint=CHAT)


def test_unknown_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match=r"endpoint .*is not one the Batch API takes"):
        validate_request_lines([json.dumps(request(0))], endpoint="/v1/nope")


def test_error_pickles() -> None:
    error = RequestValidationError("bad", line=3, field="url", code="url_mismatch", source="f")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.line, copy.field, copy.code, copy.source, str(copy)) == (
        3,
        "url",
        "url_mismatch",
        "f",
        "f: line 3: field 'url': bad",
    )


def test_check_request_on_dicts() -> None:
    info = check_request(request(0), line=1, endpoint=CHAT)
    assert (info.custom_id, info.model, info.embedding_inputs) == ("req-0", "gpt-4o-mini", 0)
    with pytest.raises(RequestValidationError, match="line 7: field 'method'"):
        check_request(request(0, method="PUT"), line=7, endpoint=CHAT)


# The fast path against a slow, obviously correct reference, on generated lines.


def reference_problem(raw: str, endpoint: str, limits: BatchLimits) -> tuple[str | None, int]:
    """(field or None, embedding inputs) by json.loads; raises ValueError for whole-line faults."""
    if len(raw.encode()) + 1 > limits.max_bytes or not raw.strip():
        raise ValueError("line")
    pairs_seen: list[list[str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        pairs_seen.append([k for k, _ in pairs])
        return dict(pairs)

    def constant(name: str) -> Any:
        raise ValueError(name)

    obj = json.loads(raw, object_pairs_hook=hook, parse_constant=constant)
    if not isinstance(obj, dict):
        raise ValueError("line")
    top = pairs_seen[-1]
    for name in ("custom_id", "method", "url", "body"):
        if top.count(name) > 1:
            return name, 0
        if name not in obj:
            return name, 0
        value = obj[name]
        if name == "custom_id" and (not isinstance(value, str) or not value):
            return name, 0
        if name == "method" and value != "POST":
            return name, 0
        if name == "url" and value != endpoint:
            return name, 0
        if name == "body" and not isinstance(value, dict):
            return name, 0
    body = obj["body"]
    body_keys = next(keys for keys in pairs_seen if set(keys) == set(body)) if body else []
    for key in ("model", "input"):
        if body_keys.count(key) > 1:
            return f"body.{key}", 0
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "body.model", 0
    if endpoint == "/v1/embeddings":
        inputs = count_embedding_inputs(body.get("input"))
        if inputs > limits.max_embedding_inputs:
            return "body.input", 0
        return None, inputs
    return None, 0


def random_text(rng: random.Random) -> str:
    alphabet = ["a", "Z", " ", '"', "\\", "/", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "日", "😀"]
    alphabet += ["\u2028", "model", "custom_id", '"url":', "\\u0041", "{", "}", "[", "]", ","]
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def random_line(rng: random.Random, index: int, endpoint: str, rate: float = 1.0) -> str:
    body: dict[str, Any] = {"model": rng.choice(["gpt-4o-mini", "o3", "日本"])}
    if endpoint == "/v1/embeddings":
        body["input"] = rng.choice(
            [random_text(rng), [random_text(rng) for _ in range(3)], [1, 2, 3], [[1], [2]], []]
        )
    else:
        body["messages"] = [{"role": "user", "content": random_text(rng)}]
        body["temperature"] = rng.choice([0, 0.5, 1e-7, 12345678901234567890])
    line: dict[str, Any] = {
        "custom_id": f"id-{index}-{random_text(rng)}" if rng.random() < 0.3 else f"id-{index}",
        "method": "POST",
        "url": endpoint,
        "body": body,
    }
    mutation = rng.randrange(10) if rng.random() < rate else -1
    if rng.random() < 0.1:  # valid, but a trap for a sloppy fast path
        body["metadata"] = {"model": 5, "url": "u", "custom_id": 7, "body": None}
    if mutation == 0:
        line["custom_id"] = rng.choice([index, True, None, "", [str(index)], 1e30])
    elif mutation == 1:
        line["method"] = rng.choice(["GET", "post", 5])
    elif mutation == 2:
        line["url"] = rng.choice(["/v1/embeddings", "/v1/chat/completions", "/v1/responses"])
    elif mutation == 3:
        body["model"] = rng.choice([5, "", None, ["m"], False])
    elif mutation == 4:
        line["custom_id"] = f"id-{rng.randrange(index + 1)}"
    elif mutation == 5:
        del line[rng.choice(["custom_id", "method", "url", "body"])]
    keys = list(line)
    rng.shuffle(keys)
    text = json.dumps({k: line[k] for k in keys}, ensure_ascii=rng.random() < 0.5)
    if mutation == 6:
        text = text[: rng.randrange(len(text))]
    elif mutation == 7:
        text = text.replace('"url"', '"url": "/v1/x", "url"', 1)
    elif mutation == 8:
        text = text.replace('"custom_id"', '"custom\\u005fid"', 1)
    elif mutation == 9:
        text = ""
    if rng.random() < 0.1:
        text = " " + text + " \t"
    return text


@pytest.mark.parametrize("endpoint", [CHAT, "/v1/embeddings"])
@pytest.mark.parametrize("rate", [0.0, 0.002, 0.01, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_fast_path_agrees_with_reference(
    tmp_path: Path, endpoint: str, rate: float, seed: int
) -> None:
    rng = random.Random(seed)
    limits = BatchLimits(max_bytes=400, max_embedding_inputs=3)
    lines = [random_line(rng, i, endpoint, rate) for i in range(600)]
    expected: tuple[int, str | None] | None = None
    seen: set[str] = set()
    inputs = 0
    for number, raw in enumerate(lines, start=1):
        try:
            field, count = reference_problem(raw, endpoint, limits)
        except ValueError:
            expected = (number, None)
            break
        if field is not None:
            expected = (number, field)
            break
        custom_id = json.loads(raw)["custom_id"]
        if custom_id in seen:
            expected = (number, "custom_id")
            break
        seen.add(custom_id)
        inputs += count
    path = write(tmp_path, ("\n".join(lines) + "\n").encode())
    if expected is None:
        summary = validate_jsonl_file(path, endpoint=endpoint, limits=limits, chunk_bytes=2000)
        assert (summary.n_requests, summary.embedding_inputs) == (len(lines), inputs)
        return
    with pytest.raises(RequestValidationError) as caught:
        validate_jsonl_file(path, endpoint=endpoint, limits=limits, chunk_bytes=2000)
    assert (caught.value.line, caught.value.field) == expected, str(caught.value)


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_agrees_with_precise_path_line_by_line(seed: int) -> None:
    rng = random.Random(100 + seed)
    limits = BatchLimits()
    for index in range(300):
        raw = random_line(rng, index, CHAT)
        try:
            info = parse_request_line(raw, line=1, endpoint=CHAT, limits=limits)
        except RequestValidationError as exc:
            with pytest.raises(RequestValidationError) as caught:
                validate_request_lines([raw], endpoint=CHAT)
            assert (caught.value.line, caught.value.field) == (exc.line, exc.field)
            continue
        summary = validate_request_lines([raw], endpoint=CHAT)
        assert summary.models == {info.model: 1}
