"""Property tests: the vectorized validation path against a json.loads reference."""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_assets.core.limits import EMBEDDINGS, MODERATIONS, BatchLimits
from batch_assets.core.request_validation import (
    RequestValidationError,
    validate_jsonl_file,
    validate_request_lines,
)
from tests.core.strategies import awkward_text, property_settings

CHAT = "/v1/chat/completions"
SETTINGS = property_settings(80)
TEXT = st.one_of(
    awkward_text(12),
    st.sampled_from(['"model": 5', '"custom_id":', '"url": "x"', "\\u0041", '{"body": null}']),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
# A wrong value for each watched field.
WRONG = {
    "custom_id": st.sampled_from([5, True, None, "", ["a"], {"a": 1}, 1e30, "\ud800"]),
    "method": st.sampled_from(["GET", "post", 5, None]),
    "url": st.sampled_from([EMBEDDINGS, "/v1/responses", "", 3]),
    "body": st.sampled_from([None, [], "body", 1]),
    "model": st.sampled_from([5, "", None, ["m"], False, "\udc00x"]),
}


@dataclass(frozen=True)
class Problem:
    """The first problem: 1-based line, field and code."""

    line: int
    field: str | None
    code: str


class _Dict(dict[str, Any]):
    duplicates: frozenset[str] = frozenset()


def _hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _Dict(pairs)
    obj.duplicates = frozenset(k for k in obj if sum(1 for key, _ in pairs if key == k) > 1)
    return obj


def _reject(name: str) -> Any:
    raise ValueError(name)


def _unicode(text: str) -> bool:
    return not any("\ud800" <= char <= "\udfff" for char in text)


def reference_unreadable(value: Any, path: str | None = None) -> tuple[str | None] | None:
    """(JSON path,) of the first value the Batch API cannot parse, in document order: a number
    that is not a finite double, a string or key with a lone surrogate; else None."""
    if isinstance(value, str):
        return None if _unicode(value) else (path,)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return (path,)
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path,)
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if not _unicode(key):
                return (path,)
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                children.append((f"{path}.{key}" if path else key, child))
            else:
                children.append((f"{path or ''}[{json.dumps(key)}]", child))
    elif isinstance(value, list):
        children = [(f"{path or ''}[{index}]", child) for index, child in enumerate(value)]
    for child_path, child in children:
        found = reference_unreadable(child, child_path)
        if found is not None:
            return found
    return None


def reference_object_problem(
    obj: Any, endpoint: str, limits: BatchLimits
) -> tuple[str | None, str] | int:
    """(field, code) of the first rule a parsed request breaks, else its embedding inputs."""
    if not isinstance(obj, dict):
        return None, "invalid_request"
    duplicates = getattr(obj, "duplicates", frozenset())
    for name in ("custom_id", "method", "url", "body"):
        if name in duplicates:
            return name, "duplicate_key"
        if name not in obj:
            return name, "missing_required_parameter"
        value = obj[name]
        if name == "custom_id" and not (isinstance(value, str) and value and _unicode(value)):
            return name, "invalid_request"
        if name == "method" and value != "POST":
            return name, "invalid_request"
        if name == "url" and value != endpoint:
            return name, "url_mismatch"
        if name == "body" and not isinstance(value, dict):
            return name, "invalid_request"
    body = obj["body"]
    for name in ("model", "input"):
        if name in getattr(body, "duplicates", frozenset()):
            return f"body.{name}", "duplicate_key"
    model = body.get("model")
    if model is None:
        if endpoint != MODERATIONS:
            return "body.model", "missing_required_parameter"
    elif not (isinstance(model, str) and model and _unicode(model)):
        return "body.model", "invalid_request"
    if endpoint != EMBEDDINGS:
        return 0
    value = body.get("input")
    tokens = isinstance(value, list) and value and all(type(x) is int for x in value)
    inputs = len(value) if isinstance(value, list) and not tokens else 1
    if inputs > limits.max_embedding_inputs:
        return "body.input", "too_many_tasks"
    return inputs


def reference(
    raws: list[bytes], endpoint: str, limits: BatchLimits
) -> Problem | tuple[int, int, dict[str | None, int], int]:
    """The first problem, else (requests, bytes, models, embedding inputs); json.loads per line."""
    seen: set[str] = set()
    models: dict[str | None, int] = {}
    n_bytes = inputs = 0
    for number, raw in enumerate(raws, start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if len(line) + 1 > limits.max_bytes:
            return Problem(number, None, "line_too_large")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return Problem(number, None, "invalid_utf8")
        if text.startswith("\ufeff"):
            return Problem(number, None, "invalid_json_line")
        if not text.strip(" \t\r\n"):
            return Problem(number, None, "blank_line")
        try:
            obj = json.loads(text, object_pairs_hook=_hook, parse_constant=_reject)
        except (ValueError, RecursionError):
            return Problem(number, None, "invalid_json_line")
        found = reference_object_problem(obj, endpoint, limits)
        if isinstance(found, tuple):
            return Problem(number, *found)
        unreadable = reference_unreadable(obj)
        if unreadable is not None:
            return Problem(number, *unreadable, "invalid_json_line")
        if obj["custom_id"] in seen:
            return Problem(number, "custom_id", "duplicate_custom_id")
        seen.add(obj["custom_id"])
        model = obj["body"].get("model")
        models[model] = models.get(model, 0) + 1
        n_bytes += len(line) + 1
        inputs += found
    if not raws:
        return Problem(0, None, "empty_file")
    return len(raws), n_bytes, models, inputs


FAULTS = ["none"] * 6 + [*WRONG, "delete", "repeat", "text", "text", "unreadable"]
# JSON text Python reads but the Batch API does not (and some it does, at the edges).
UNREADABLE_TOKENS = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "1.7976931348623159e308",
        "1.7976931348623157e308",
        "1" * 309,
        "-" + "9" * 320,
        str(2**1024 - 2**970),
        str(2**1024 - 2**971),
        str(2**200),
        '"\\ud800"',
        '"x\\udc00"',
        '"\\ud83d\\ude00"',
        '{"\\udbff": 1}',
    ]
)
PLACEHOLDER = "@unreadable@"
# Where polars and json differ.
TRAPS = ["none", "twice", "escape", "model", "custom_id", "pad", "unreadable"]
EDITS = ["cut", "blank", "twice", "escape", "nan", "bom", "latin1", "pad"]


def request_body(draw: st.DrawFn, endpoint: str, models: list[str]) -> dict[str, Any]:
    """A body for `endpoint`: a model (optional for moderations), its input, and extra keys."""
    body: dict[str, Any] = {}
    if endpoint != MODERATIONS or draw(st.booleans()):
        body["model"] = draw(st.sampled_from(models))
    if endpoint == EMBEDDINGS:
        body["input"] = draw(
            st.one_of(TEXT, st.lists(TEXT, max_size=4), st.lists(st.integers(0, 9), max_size=3))
        )
    else:
        body["messages"] = [{"role": "user", "content": draw(TEXT)}]
    body.update(draw(st.dictionaries(TEXT, JSON, max_size=2)))
    return body


def break_request(
    draw: st.DrawFn,
    request: dict[str, Any],
    fault: str,
    index: int,
    wrong: dict[str, st.SearchStrategy[Any]],
) -> None:
    """Break the `index`-th request as `fault` says: a wrong value, a field gone, a repeated id."""
    if fault == "model":
        request["body"]["model"] = draw(wrong["model"])
    elif fault in wrong:
        request[fault] = draw(wrong[fault])
    elif fault == "delete":
        del request[draw(st.sampled_from(["custom_id", "method", "url", "body"]))]
    elif fault == "repeat" and index:
        request["custom_id"] = f"id-{draw(st.integers(0, index - 1))}"


@st.composite
def request_lines(draw: st.DrawFn, endpoint: str, faults: list[str] = FAULTS) -> list[bytes]:
    """Request lines: mostly valid, some broken in one of many ways, written in varied styles."""
    lines = []
    for index in range(draw(st.integers(0, 12))):
        body = request_body(draw, endpoint, ["gpt-4o-mini", "o3", "日本", 'm\\"'])
        request: dict[str, Any] = {
            "custom_id": draw(st.sampled_from([f"id-{index}", f"{index}-" + draw(TEXT)])),
            "method": "POST",
            "url": endpoint,
            "body": body,
        }
        request.update(draw(st.dictionaries(TEXT, JSON, max_size=2)))
        fault = draw(st.sampled_from(faults))
        edit = fault if fault in EDITS else draw(st.sampled_from(EDITS))
        break_request(draw, request, fault, index, WRONG)
        if fault == "unreadable":
            where = [PLACEHOLDER, [1, PLACEHOLDER], {"a": PLACEHOLDER}]
            body[draw(TEXT)] = draw(st.sampled_from(where))
        keys = draw(st.permutations(list(request)))
        text = json.dumps(
            {key: request[key] for key in keys},
            ensure_ascii=draw(st.booleans()),
            separators=draw(st.sampled_from([(", ", ": "), (",", ":")])),
        )
        if fault == "text" or fault in EDITS:
            key = draw(st.sampled_from(['"custom_id"', '"url"', '"model"', '"body"']))
            if edit == "cut":
                text = text[: draw(st.integers(0, len(text) - 1))]
            elif edit == "blank":
                text = draw(st.sampled_from(["", " ", "\t "]))
            elif edit == "twice":
                first = draw(st.sampled_from(['"x"', "1", "null", "{}"]))
                text = text.replace(key, f"{key}: {first}, {key}", 1)
            elif edit == "escape":
                text = text.replace(key, key.replace("d", "\\u0064").replace("l", "\\u006c"), 1)
            elif edit == "nan":
                text = text[:-1] + ', "t": NaN}'
            elif edit == "bom":
                text = "\ufeff" + text
            elif edit == "pad":
                text = " \t" + text + "  "
        text = text.replace(json.dumps(PLACEHOLDER), draw(UNREADABLE_TOKENS))
        raw = text.encode("utf-8", "surrogatepass")
        if (fault == "text" or fault in EDITS) and edit == "latin1":
            raw = raw.replace(b'"', b'"\xe9', 1)
        lines.append(raw + draw(st.sampled_from([b"", b"\r"])))
    return lines


def outcome(run: Any) -> Problem | tuple[int, int, dict[str | None, int], int]:
    try:
        summary = run()
    except RequestValidationError as error:
        return Problem(error.line or 0, error.field, error.code)
    return summary.n_requests, summary.n_bytes, summary.models, summary.embedding_inputs


@SETTINGS
@pytest.mark.parametrize("faults", [FAULTS, TRAPS], ids=["faults", "traps"])
@pytest.mark.parametrize("endpoint", [CHAT, EMBEDDINGS, MODERATIONS])
@given(data=st.data())
def test_file_and_lines_agree_with_the_reference(
    endpoint: str, faults: list[str], data: st.DataObject
) -> None:
    raws = data.draw(request_lines(endpoint, faults))
    limits = BatchLimits(
        max_bytes=data.draw(st.sampled_from([120, 400, 10_000])),
        max_embedding_inputs=data.draw(st.integers(1, 4)),
    )
    expected = reference(raws, endpoint, limits)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "requests.jsonl"
        path.write_bytes(b"".join(raw + b"\n" for raw in raws))
        chunk_bytes = data.draw(st.sampled_from([64, 700, 1 << 20]))
        got = outcome(
            lambda: validate_jsonl_file(
                path, endpoint=endpoint, limits=limits, chunk_bytes=chunk_bytes
            )
        )
    assert got == expected
    got_lines = outcome(lambda: validate_request_lines(raws, endpoint=endpoint, limits=limits))
    assert got_lines == expected
