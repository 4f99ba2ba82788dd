"""Property tests: request dicts streamed into shards against a json.dumps reference."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from upath import UPath

from batch_assets.core.limits import EMBEDDINGS, MODERATIONS, BatchLimits
from batch_assets.core.request_validation import RequestValidationError
from batch_assets.core.sharding import shard_requests
from tests.core.strategies import property_settings
from tests.core.test_request_validation_properties import (
    TEXT,
    break_request,
    reference_object_problem,
    reference_unreadable,
    request_body,
)

CHAT = "/v1/chat/completions"
SETTINGS = property_settings(60)
# Values a dict may hold that JSON cannot, and wrong values for the watched fields.
UNWRITABLE = st.sampled_from([float("nan"), float("inf"), {1, 2}, b"bytes", object(), "\ud800"])
# Integers just beyond a double, at its edge, and well within it; a key with a lone surrogate.
NUMBERS = st.sampled_from(
    [10**400, -(2**1024), 2**1024 - 2**970, 2**1024 - 2**971, 2**200, 10**5000, {"\udc00": 1}]
)
WRONG = {
    "custom_id": st.sampled_from([5, True, None, "", b"id", "\udc00", ["a"]]),
    "method": st.sampled_from(["GET", None, b"POST"]),
    "url": st.sampled_from([EMBEDDINGS, "/v1/responses", None]),
    "body": st.sampled_from([None, [], "body", b"{}"]),
    "model": st.sampled_from([5, "", None, b"m", "\ud800m"]),
}


@st.composite
def requests(draw: st.DrawFn, endpoint: str) -> list[Any]:
    """Request dicts: mostly valid (several models, non-ASCII ids), some broken or unwritable."""
    out: list[Any] = []
    faults = ["none"] * 8 + [*WRONG, "delete", "repeat", "unwritable", "unreadable", "type"]
    faults = draw(st.sampled_from([["none"], faults]))  # half the time, every request is valid
    for index in range(draw(st.integers(0, 14))):
        body = request_body(draw, endpoint, ["m1", "m2", "日本", 'm\\"'])
        request: dict[str, Any] = {
            "custom_id": draw(
                st.sampled_from([f"id-{index}", f"{index}-é", f"{index}" + draw(TEXT)])
            ),
            "method": "POST",
            "url": endpoint,
            "body": body,
        }
        fault = draw(st.sampled_from(faults))
        break_request(draw, request, fault, index, WRONG)
        if fault == "unwritable":
            body["extra"] = draw(UNWRITABLE)
        elif fault == "unreadable":
            body["extra"] = draw(st.sampled_from([[1, draw(NUMBERS)], {"a b": draw(NUMBERS)}]))
        elif fault == "type":
            out.append(draw(st.sampled_from([[request], "request", None, 5])))
            continue
        out.append(request)
    return out


def expected_shards(
    items: list[Any], endpoint: str, limits: BatchLimits
) -> tuple[int, str | None, str] | list[tuple[str | None, list[str], int]]:
    """The first problem (line, field, code), else each shard's (model, lines, inputs)."""
    seen: set[str] = set()
    shards: list[tuple[str | None, list[str], int]] = []
    open_shard: dict[str | None, int] = {}
    for number, item in enumerate(items, start=1):
        found = reference_object_problem(item, endpoint, limits)
        if isinstance(found, tuple):
            return number, *found
        if item["custom_id"] in seen:
            return number, "custom_id", "duplicate_custom_id"
        unreadable = reference_unreadable(item)
        if unreadable is not None:
            return number, *unreadable, "invalid_json_line"
        try:
            line = json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            size = len(line.encode()) + 1
        except (TypeError, ValueError):
            return number, None, "invalid_json_line"
        if size > limits.max_bytes:
            return number, None, "line_too_large"
        seen.add(item["custom_id"])
        model = item["body"].get("model")
        index = open_shard.get(model)
        if index is not None:
            _, lines, inputs = shards[index]
            fits = (
                len(lines) < limits.max_requests
                and sum(len(x.encode()) + 1 for x in lines) + size <= limits.max_bytes
                and inputs + found <= limits.max_embedding_inputs
            )
            if not fits:
                index = None
        if index is None:
            open_shard[model] = index = len(shards)
            shards.append((model, [], 0))
        model, lines, inputs = shards[index]
        shards[index] = (model, [*lines, line], inputs + found)
    if not items:
        return 0, None, "empty_file"
    return shards


@SETTINGS
@pytest.mark.parametrize("endpoint", [CHAT, EMBEDDINGS, MODERATIONS])
@given(data=st.data())
def test_shards_equal_the_reference(endpoint: str, data: st.DataObject) -> None:
    items = data.draw(requests(endpoint))
    limits = BatchLimits(
        max_requests=data.draw(st.integers(1, 6)),
        max_bytes=data.draw(st.sampled_from([150, 400, 2000, 200 * 1024 * 1024])),
        max_embedding_inputs=data.draw(st.integers(1, 8)),
    )
    expected = expected_shards(items, endpoint, limits)
    with tempfile.TemporaryDirectory() as folder:
        try:
            shards = shard_requests(iter(items), Path(folder), endpoint=endpoint, limits=limits)
        except RequestValidationError as error:
            assert (error.line or 0, error.field, error.code) == expected
            assert list(Path(folder).iterdir()) == []
            return
        got = []
        for shard in shards:
            content = UPath(shard.url).read_bytes()
            lines = content.decode().split("\n")
            assert lines.pop() == ""
            assert shard.n_bytes == len(content)
            assert shard.n_requests == len(lines)
            assert shard.sha256 == hashlib.sha256(content).hexdigest()
            got.append((shard.model, lines, shard.n_embedding_inputs))
    assert got == expected
