"""Numbers beyond a double and lone surrogates are refused, naming line and field, every way in."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from upath import UPath

from batch_assets.core.limits import BatchLimits
from batch_assets.core.portable_json import may_hold_long_integer
from batch_assets.core.request_template import RequestTemplate, TemplateError, render_requests
from batch_assets.core.request_validation import (
    RequestValidationError,
    validate_jsonl_file,
    validate_request_lines,
)
from batch_assets.core.sharding import shard_jsonl_file, shard_request_lines, shard_requests

CHAT = "/v1/chat/completions"
PREFIX = b'{"custom_id": "r9", "method": "POST", "url": "/v1/chat/completions", "body": '

# JSON text for a body value that Python reads and the Batch API (and polars) does not:
# (the value's text, the field named, words in the message).
BAD_TEXT = {
    "1e400": ('{"model": "m", "temperature": 1e400}', "body.temperature", "1e400"),
    "-1e400": ('{"model": "m", "temperature": -1e400}', "body.temperature", "-1e400"),
    "just beyond": ('{"model": "m", "t": 1.7976931348623159e308}', "body.t", "double"),
    "309 digits": ('{"model": "m", "seed": ' + str(2**1024 - 2**970) + "}", "body.seed", "double"),
    "5000 digits": ('{"model": "m", "seed": -' + "9" * 5000 + "}", "body.seed", "double"),
    "in a list": ('{"model": "m", "stop": [1, 1e999]}', "body.stop[1]", "1e999"),
    "odd key": ('{"model": "m", "a b": {"c": 1e400}}', 'body["a b"].c', "double"),
    "lone high": (
        '{"model": "m", "messages": [{"content": "\\ud800x"}]}',
        "body.messages[0].content",
        "surrogate",
    ),
    "lone high at end": ('{"model": "m", "stop": "a\\udbff"}', "body.stop", "surrogate"),
    "high then A": ('{"model": "m", "stop": "\\ud800\\u0041"}', "body.stop", "surrogate"),
    "lone low": ('{"model": "m", "stop": "\\udc00"}', "body.stop", "surrogate"),
    "key": ('{"model": "m", "logit_bias": {"\\udfff": 1}}', "body.logit_bias", "key"),
}
# Values at the edge that the Batch API parses.
GOOD_TEXT = [
    '{"model": "m", "temperature": 1.7976931348623157e308}',
    '{"model": "m", "seed": ' + str(2**1024 - 2**971) + "}",
    '{"model": "m", "temperature": 1e-400, "x": -0.0}',
    '{"model": "m", "stop": "\\ud83d\\ude00 \\\\ud800"}',
    '{"model": "m", "stop": "' + "9" * 400 + '"}',
]


def request_line(index: int, body: str = '{"model": "m", "messages": []}') -> bytes:
    """One request line (no line end) with custom_id r<index> and this body text."""
    return PREFIX.replace(b'"r9"', f'"r{index}"'.encode()) + body.encode() + b"}"


def lines_with(body: str, at: int, total: int) -> list[bytes]:
    """`total` good lines, the one at 1-based `at` with this body."""
    return [request_line(i, body) if i == at else request_line(i) for i in range(1, total + 1)]


def earlier_run(out: Path) -> dict[str, bytes]:
    """Shards of an earlier run in `out`, which a failed run must leave as they are."""
    shard_request_lines([request_line(i) for i in range(3)], out, endpoint=CHAT)
    return {path.name: path.read_bytes() for path in out.iterdir()}


def assert_refused(error: RequestValidationError, line: int, field: str | None, words: str) -> None:
    assert (error.line, error.field, error.code) == (line, field, "invalid_json_line")
    assert words in str(error) and f"line {line}" in str(error)


@pytest.mark.parametrize("case", list(BAD_TEXT))
@pytest.mark.parametrize(("at", "total", "chunk_bytes"), [(2, 3, 1 << 20), (4000, 5000, 65536)])
def test_a_file_line_is_refused_and_no_shard_is_written(
    tmp_path: Path, case: str, at: int, total: int, chunk_bytes: int
) -> None:
    body, field, words = BAD_TEXT[case]
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(lines_with(body, at, total)) + b"\n")
    out = tmp_path / "shards"
    before = earlier_run(out)

    with pytest.raises(RequestValidationError) as validated:
        validate_jsonl_file(path, endpoint=CHAT, chunk_bytes=chunk_bytes)
    with pytest.raises(RequestValidationError) as sharded:
        shard_jsonl_file(path, out, endpoint=CHAT, chunk_bytes=chunk_bytes)

    assert_refused(validated.value, at, field, words)
    assert_refused(sharded.value, at, field, words)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("case", list(BAD_TEXT))
@pytest.mark.parametrize("kind", ["str", "bytes", "series"])
def test_request_lines_are_refused_and_no_shard_is_written(
    tmp_path: Path, case: str, kind: str
) -> None:
    body, field, words = BAD_TEXT[case]
    raws = lines_with(body, 3, 4)
    lines: Any = {
        "str": [raw.decode() for raw in raws],
        "bytes": raws,
        "series": pl.Series([raw.decode() for raw in raws]),
    }[kind]
    with pytest.raises(RequestValidationError) as validated:
        validate_request_lines(lines, endpoint=CHAT)
    with pytest.raises(RequestValidationError) as sharded:
        shard_request_lines(lines, tmp_path, endpoint=CHAT)
    assert_refused(validated.value, 3, field, words)
    assert_refused(sharded.value, 3, field, words)
    assert list(tmp_path.iterdir()) == []


def test_values_at_the_edge_pass_and_polars_reads_the_shards(tmp_path: Path) -> None:
    """Polars reads every shard line, but one with an integer beyond 128 bits (see
    `requested_ids`, which reads those ids itself)."""
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"".join(request_line(i, body) + b"\n" for i, body in enumerate(GOOD_TEXT)))
    [shard] = shard_jsonl_file(path, tmp_path / "shards", endpoint=CHAT)
    assert shard.n_requests == len(GOOD_TEXT)
    lines = UPath(shard.url).read_bytes().splitlines(keepends=True)
    del lines[1]
    ids = pl.read_ndjson(b"".join(lines), schema={"custom_id": pl.String})["custom_id"]
    assert ids.to_list() == [f"r{i}" for i in range(len(GOOD_TEXT)) if i != 1]


def chat(index: int, **body: Any) -> dict[str, Any]:
    """A request dict with custom_id r<index> and these extra body keys."""
    return {
        "custom_id": f"r{index}",
        "method": "POST",
        "url": CHAT,
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body},
    }


BAD_VALUES = {
    "inf": ({"temperature": float("inf")}, "body.temperature", "not a JSON number"),
    "nan": ({"temperature": float("nan")}, "body.temperature", "not a JSON number"),
    "10**400": ({"seed": 10**400}, "body.seed", "beyond the range of a double"),
    "halfway": ({"x": [-(2**1024 - 2**970)]}, "body.x[0]", "double"),
    "10**5000": ({"seed": 10**5000}, "body.seed", "double"),
    "schema": (
        {"response_format": {"schema": {"minimum": 10**400}}},
        "body.response_format.schema.minimum",
        "double",
    ),
    "surrogate": ({"stop": ["ok", "\udc00"]}, "body.stop[1]", "surrogate"),
    "key": ({"logit_bias": {"\ud800": 1}}, "body.logit_bias", "key"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
@pytest.mark.parametrize("at", [2, 4500])
def test_a_request_dict_is_refused_and_no_shard_is_written(
    tmp_path: Path, case: str, at: int
) -> None:
    """At 4500 the bad line comes after more than a megabyte of lines has been written."""
    body, field, words = BAD_VALUES[case]
    padding = "p" * 300
    requests = (chat(i, **body) if i == at else chat(i, note=padding) for i in range(1, at + 100))
    before = earlier_run(tmp_path)
    with pytest.raises(RequestValidationError) as caught:
        shard_requests(requests, tmp_path, endpoint=CHAT, limits=BatchLimits(max_requests=1000))
    assert_refused(caught.value, at, field, words)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_integer_beyond_a_double_comes_before_later_problems(tmp_path: Path) -> None:
    requests = [chat(1), chat(2, seed=10**400), chat(3), chat(1), {"custom_id": "x"}]
    with pytest.raises(RequestValidationError) as caught:
        shard_requests(iter(requests), tmp_path, endpoint=CHAT)
    assert (caught.value.line, caught.value.field) == (2, "body.seed")
    requests = [chat(1), chat(1), chat(3, seed=10**400)]
    with pytest.raises(RequestValidationError) as caught:
        shard_requests(iter(requests), tmp_path, endpoint=CHAT)
    assert (caught.value.line, caught.value.code) == (2, "duplicate_custom_id")


def test_edge_values_in_dicts_pass(tmp_path: Path) -> None:
    requests = [chat(1, seed=2**1024 - 2**971, big=2**200), chat(2, stop="9" * 400)]
    [shard] = shard_requests(iter(requests), tmp_path, endpoint=CHAT)
    assert [json.loads(line) for line in UPath(shard.url).read_text().splitlines()] == requests


TEMPLATE = {"endpoint": CHAT, "model": "m", "user_template": "{text}"}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"params": {"seed": 10**400}}, "body.seed", "beyond the range of a double"),
        ({"params": {"temperature": float("inf")}}, "body.temperature", "not a JSON number"),
        ({"params": {"stop": ["\ud800"]}}, "body.stop[0]", "surrogate"),
        (
            {"response_format": {"type": "number", "maximum": -(10**400)}},
            "body.response_format.json_schema.schema.maximum",
            "double",
        ),
        ({"system_prompt": "a\udc00"}, "body.messages[0].content", "surrogate"),
        ({"user_template": "{text} \ud800"}, "body.messages[0].content", "surrogate"),
    ],
)
def test_template_values_are_refused_naming_the_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(TemplateError, match=re.escape(f"field {field!r}")) as caught:
        RequestTemplate(**{**TEMPLATE, **changes})
    assert words in str(caught.value)


def test_template_params_changed_after_construction_are_refused_when_rendered() -> None:
    params: dict[str, Any] = {"temperature": 0.5}
    template = RequestTemplate(**TEMPLATE, params=params)
    params["seed"] = 10**400
    with pytest.raises(TemplateError, match=re.escape("field 'body.seed'")):
        render_requests(pl.DataFrame({"custom_id": ["a"], "text": ["hi"]}), template)


def test_long_integer_search_finds_every_run_of_309_digits() -> None:
    digits = re.compile(rb"[0-9]{309}")
    generator = random.Random(7)
    for _ in range(3000):
        parts = [
            generator.choice([b"x", b"1", b'"', b"\n"]) * generator.randint(0, 400)
            for _ in range(generator.randint(1, 6))
        ]
        data = b"".join(parts)
        assert may_hold_long_integer(data) == bool(digits.search(data)), data
