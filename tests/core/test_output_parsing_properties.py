"""Property tests: output and error files parsed against a json.loads reference."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from batch_assets.core import output_parsing
from batch_assets.core.output_parsing import RESULT_SCHEMA, parse_batch_file, scan_batch_file
from tests.core.strategies import awkward_text, json_values, property_settings

SETTINGS = property_settings(100)
TEXT = st.one_of(
    awkward_text(20),
    st.builds(
        lambda part, times: part * times, st.sampled_from(["ab", "é\n", '"']), st.integers(1, 4000)
    ),
)
INT = st.integers(-(2**63), 2**63 - 1)
JUNK = json_values(TEXT, max_leaves=6)
# polars' JSON reader rejects integers beyond 128 bits anywhere in a line, so well-typed junk fits.
TYPED_JUNK = json_values(TEXT, max_leaves=6, integers=st.integers(-(2**127), 2**127 - 1))
# Field names: unknown keys mixed into objects never take these.
KNOWN = {
    *("id", "custom_id", "response", "status_code", "request_id", "body", "error", "model"),
    *("status", "incomplete_details", "reason", "choices", "finish_reason", "text", "message"),
    *("content", "refusal", "role", "output", "type", "data", "embedding", "usage", "code"),
    *("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "total_tokens"),
    *("prompt_tokens_details", "input_tokens_details", "cached_tokens"),
    *("completion_tokens_details", "output_tokens_details", "reasoning_tokens"),
}
# Values of the wrong type for most fields (read as null), and text with a lone surrogate.
WRONG = st.sampled_from([True, "12", 1.5, [], {}, 2**70, "x\ud800y"])


def maybe(strategy: st.SearchStrategy[Any], typed: bool) -> st.SearchStrategy[Any]:
    """The value, null, or (when the test allows it) a value of the wrong type."""
    options = [strategy, st.none()]
    return st.one_of(*options, WRONG) if not typed else st.one_of(*options)


def objects(fields: dict[str, st.SearchStrategy[Any]], typed: bool) -> st.SearchStrategy[Any]:
    """Objects with any subset of `fields`, unknown keys mixed in, or null or a wrong type."""
    some = st.fixed_dictionaries(fields) | st.fixed_dictionaries({}, optional=fields)
    shaped = some.flatmap(
        lambda obj: st.dictionaries(
            TEXT.filter(lambda key: key not in KNOWN), TYPED_JUNK if typed else JUNK, max_size=2
        ).map(lambda junk: {**junk, **obj})
    )
    return maybe(shaped, typed)


def lists(items: st.SearchStrategy[Any], typed: bool) -> st.SearchStrategy[Any]:
    return maybe(st.lists(maybe(items, typed), max_size=3), typed)


def lines(typed: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Output and error lines of every endpoint, with missing, null and (maybe) wrong parts."""
    text, number = maybe(TEXT, typed), maybe(INT, typed)
    details = {
        key: objects({"cached_tokens": number, "reasoning_tokens": number}, typed)
        for key in (
            "prompt_tokens_details",
            "input_tokens_details",
            "completion_tokens_details",
            "output_tokens_details",
        )
    }
    usage = objects(
        {
            **{
                key: number
                for key in (
                    "prompt_tokens",
                    "completion_tokens",
                    "input_tokens",
                    "output_tokens",
                    "total_tokens",
                )
            },
            **details,
        },
        typed,
    )
    choice = objects(
        {
            "finish_reason": text,
            "text": text,
            "message": objects({"content": text, "refusal": text, "role": text}, typed),
        },
        typed,
    )
    part = objects(
        {
            "type": st.sampled_from(["output_text", "refusal", "other"]),
            "text": text,
            "refusal": text,
        },
        typed,
    )
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    body = objects(
        {
            "model": text,
            "status": text,
            "incomplete_details": objects({"reason": text}, typed),
            "choices": lists(choice, typed),
            "output": lists(objects({"type": text, "content": lists(part, typed)}, typed), typed),
            "data": lists(
                objects({"embedding": lists(floats | st.integers(-5, 5), typed)}, typed), typed
            ),
            "usage": usage,
            "error": objects({"message": text, "type": text, "code": text}, typed),
        },
        typed,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "id": text,
            "custom_id": text,
            "response": objects(
                {
                    "status_code": maybe(st.integers(-(2**31), 2**31 - 1), typed),
                    "request_id": text,
                    "body": body,
                },
                typed,
            ),
            "error": objects({"code": text, "message": text}, typed),
        },
    )


SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: Any) -> Any:
    """Lone surrogates as U+FFFD."""
    return SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


def get(obj: Any, key: str, kind: type | None = None) -> Any:
    """obj[key] if obj is an object holding a value of `kind` there, else None."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if kind is int:
        fits = type(value) is int and -(2**63) <= value < 2**63
        return value if fits else None
    if kind is None:
        return value
    return clean(value) if isinstance(value, kind) else None


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def reference_row(item: dict[str, Any], batch_id: str | None) -> dict[str, Any]:
    """One row the slow way: plain dict walking, where a value of the wrong type counts as null."""
    response = get(item, "response", dict)
    body = get(response, "body", dict)
    choices = get(body, "choices", list)
    choice = choices[0] if choices and isinstance(choices[0], dict) else None
    message = get(choice, "message", dict)
    usage = get(body, "usage", dict)
    error, body_error = get(item, "error", dict), get(body, "error", dict)
    data = get(body, "data", list)
    embedding = get(data[0], "embedding", list) if data else None
    if embedding is not None:
        embedding = [float(x) if type(x) in (int, float) else None for x in embedding]

    def joined(kind: str, key: str) -> str | None:
        parts = [
            get(part, key, str)
            for out in items(get(body, "output", list))
            for part in items(get(out, "content", list))
            if get(part, "type", str) == kind and get(part, key, str) is not None
        ]
        return "".join(parts) if parts else None

    status = get(response, "status_code", int)
    return {
        "custom_id": get(item, "custom_id", str),
        "batch_id": batch_id,
        "batch_request_id": get(item, "id", str),
        "request_id": get(response, "request_id", str),
        "status_code": status if status is not None and -(2**31) <= status < 2**31 else None,
        "model": get(body, "model", str),
        "answer": first(
            get(message, "content", str), get(choice, "text", str), joined("output_text", "text")
        ),
        "refusal": first(get(message, "refusal", str), joined("refusal", "refusal")),
        "embedding": embedding,
        "finish_reason": first(
            get(choice, "finish_reason", str),
            get(get(body, "incomplete_details", dict), "reason", str),
            get(body, "status", str),
        ),
        "input_tokens": first(get(usage, "prompt_tokens", int), get(usage, "input_tokens", int)),
        "output_tokens": first(
            get(usage, "completion_tokens", int), get(usage, "output_tokens", int)
        ),
        "total_tokens": get(usage, "total_tokens", int),
        "cached_tokens": first(
            get(get(usage, "prompt_tokens_details", dict), "cached_tokens", int),
            get(get(usage, "input_tokens_details", dict), "cached_tokens", int),
        ),
        "reasoning_tokens": first(
            get(get(usage, "completion_tokens_details", dict), "reasoning_tokens", int),
            get(get(usage, "output_tokens_details", dict), "reasoning_tokens", int),
        ),
        "error_code": first(get(error, "code", str), get(body_error, "code", str)),
        "error_type": get(body_error, "type", str),
        "error_message": first(get(error, "message", str), get(body_error, "message", str)),
    }


def write(folder: str, draw: st.DrawFn, items_: list[dict[str, Any]]) -> Path:
    """The lines as a file: blank lines and CRLF ends mixed in; ASCII escapes where needed."""
    path = Path(folder) / "output.jsonl"
    with path.open("wb") as stream:
        for item in items_:
            text = json.dumps(item, ensure_ascii=False)
            if SURROGATE.search(text) or draw(st.booleans()):  # UTF-8 cannot hold a surrogate
                text = json.dumps(item)
            stream.write(text.encode() + draw(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \n"])))
    return path


@SETTINGS
@given(data=st.data())
def test_parsed_frame_equals_the_reference(data: st.DataObject) -> None:
    typed = data.draw(st.booleans())
    items_ = data.draw(st.lists(lines(typed), max_size=12))
    batch_id = data.draw(st.none() | st.just("batch_1"))
    read_bytes = data.draw(st.sampled_from([16, 200, 4096, 1 << 20]))
    frame_rows = data.draw(st.sampled_from([1, 3, 1 << 16]))
    expected = pl.DataFrame(
        [reference_row(item, batch_id) for item in items_], schema=RESULT_SCHEMA
    )
    with tempfile.TemporaryDirectory() as folder:
        path = write(folder, data.draw, items_)
        with (
            mock.patch.object(output_parsing, "_READ_BYTES", read_bytes),
            mock.patch.object(output_parsing, "_FRAME_ROWS", frame_rows),
        ):
            got = parse_batch_file(path, batch_id=batch_id)
        assert got.schema == pl.Schema(RESULT_SCHEMA)
        assert got.to_dicts() == expected.to_dicts()
        if typed:  # the lazy polars path reads well-typed files the same way
            assert scan_batch_file(path, batch_id=batch_id).collect().equals(got)
