"""Whole batches of request dicts encoded at once, when every request is plainly valid.

`encode_plain` vouches for a batch only if msgspec writes each request exactly as
`json.dumps(request, ensure_ascii=False, allow_nan=False, separators=(",", ":"))` does and the
request passes every check of `check_request` and `check_readable`; otherwise it answers None and
the caller takes the batch one request at a time, which finds and names the problem.

What msgspec writes differently from `json`, and how a batch holding it is turned away: values
of other types than dict, list, tuple, str, int, float, bool and None (subclasses, sets, bytes,
dates, enums, dataclasses...) are found by walking the batch level by level with
`gc.get_referents`; floats that are not finite, or that `repr` writes with an exponent (below 1e-4
or from 1e16 up), by looking at the floats of the levels that hold one; keys msgspec refuses (and
lone surrogates, anywhere) make it raise. Integers beyond a double are found in the written bytes.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec

from batch_assets.core.limits import EMBEDDINGS, BatchLimits
from batch_assets.core.portable_json import may_hold_long_integer
from batch_assets.core.request_validation import count_embedding_inputs

# The types whose values msgspec and `json` write alike (floats: `_floats_written_alike`).
_PLAIN_TYPES = frozenset({dict, list, tuple, str, int, float, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})
# Levels of nesting walked at most; deeper (or circular) batches go one request at a time.
_MAX_DEPTH = 64
# `repr` writes a float without an exponent in [1e-4, 1e16), and so does msgspec (or 0.0).
_SMALLEST_PLAIN_FLOAT = 1e-4
_LARGEST_PLAIN_FLOAT = 1e16


@dataclass(frozen=True, slots=True)
class PlainBatch:
    """Valid requests written as JSON lines, with what sharding needs of each."""

    block: bytes  # every line, each followed by LF
    custom_ids: list[str]
    models: list[str]
    embedding_inputs: list[int] | None  # None: not the embeddings endpoint


def _floats_written_alike(floats: set[float]) -> bool:
    """Whether every float is written by msgspec as `repr` writes it (NaN and infinities fail)."""
    return all(not x or _SMALLEST_PLAIN_FLOAT <= abs(x) < _LARGEST_PLAIN_FLOAT for x in floats)


def _holds_plain_values(level: Sequence[object]) -> bool:
    """Whether everything these values hold is of _PLAIN_TYPES, with floats written alike."""
    for _ in range(_MAX_DEPTH):
        level = gc.get_referents(*level)
        types = set(map(type, level))
        if not types <= _PLAIN_TYPES:
            return False
        if float in types and not _floats_written_alike({x for x in level if type(x) is float}):
            return False
        if types.isdisjoint(_CONTAINERS):
            return True
    return False


def _all_non_empty_str(values: list[object]) -> bool:
    return set(map(type, values)) == {str} and "" not in values


def _embedding_inputs(bodies: list[dict[str, object]], limits: BatchLimits) -> list[int] | None:
    """Each request's embedding inputs, if none holds more than one batch allows."""
    inputs = [count_embedding_inputs(body.get("input")) for body in bodies]
    return inputs if max(inputs) <= limits.max_embedding_inputs else None


def _holds_too_large_line(block: bytes, max_bytes: int) -> bool:
    """Whether a line of the block is longer, with its LF, than max_bytes."""
    return len(block) > max_bytes and max(len(line) for line in block.split(b"\n")) + 1 > max_bytes


def encode_plain(
    requests: Sequence[object],
    *,
    endpoint: str,
    limits: BatchLimits,
    encoder: msgspec.json.Encoder,
) -> PlainBatch | None:
    """The batch written as JSON lines, if every request is plainly valid; else None."""
    if not requests or set(map(type, requests)) != {dict}:
        return None
    dicts = cast(list[dict[str, Any]], requests)
    try:
        bodies = [request["body"] for request in dicts]
        custom_ids = [request["custom_id"] for request in dicts]
        methods = [request["method"] for request in dicts]
        urls = [request["url"] for request in dicts]
        if set(map(type, bodies)) != {dict}:
            return None
        models = [body["model"] for body in bodies]
    except KeyError:
        return None
    count = len(requests)
    if (  # the walk first: it makes sure `==` below compares plain values only
        not _holds_plain_values(bodies if set(map(len, dicts)) == {4} else dicts)
        or set(map(type, methods)) != {str}
        or set(map(type, urls)) != {str}
        or methods.count("POST") != count
        or urls.count(endpoint) != count
        or not _all_non_empty_str(custom_ids)
        or not _all_non_empty_str(models)
    ):
        return None
    inputs = None
    if endpoint == EMBEDDINGS:
        inputs = _embedding_inputs(bodies, limits)
        if inputs is None:
            return None
    try:
        block = encoder.encode_lines(requests)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return None
    if may_hold_long_integer(block) or _holds_too_large_line(block, limits.max_bytes):
        return None
    return PlainBatch(block, custom_ids, models, inputs)
