"""Fast JSON reading and writing for the engine, and keys for caches of template-wide facts.

msgspec does the work; where it reads or writes differently from the standard `json` module
(NaN and 1e400 literals, lone surrogates, integers past its range) the `json` module's answer
is used, so values read and lines written mean the same as before.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()
_KEY_ENCODER = msgspec.msgpack.Encoder()
_CONTAINERS = (dict, list)
# msgpack writes every float as 0xcb and its 8 big-endian bytes; NaN and the infinities (and
# nothing else that is finite) have all 11 exponent bits set. Other bytes can look the same, so
# a match is only a reason to look closer.
_MAYBE_NONFINITE = re.compile(rb"\xcb[\x7f\xff][\xf0-\xff]")


def decode_json(raw: bytes) -> Any:
    """Read one JSON text exactly as `json.loads` does (its errors included)."""
    try:
        return _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return json.loads(raw)


def encode_json_line(value: Any) -> bytes:
    """One compact JSONL line; a number that is not finite (not JSON) makes it raise ValueError.

    Strings are escaped as `json.dumps(ensure_ascii=False)` escapes them; a lone surrogate
    (which UTF-8 cannot carry) is written as its surrogatepass bytes, as before.
    """
    if _may_hold_nonfinite(value) and _first_nonfinite(value) is not None:
        # json.dumps(allow_nan=False)'s own words
        raise ValueError("Out of range float values are not JSON compliant")
    try:
        return _ENCODER.encode(value) + b"\n"
    except (UnicodeEncodeError, OverflowError, TypeError):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8", "surrogatepass")


def encode_float_free_line(value: Any) -> bytes:
    """`encode_json_line` for a value built to hold no float at all (so none that is not
    finite): the look for one is left out."""
    try:
        return _ENCODER.encode(value) + b"\n"
    except (UnicodeEncodeError, OverflowError, TypeError):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return (text + "\n").encode("utf-8", "surrogatepass")


def _may_hold_nonfinite(value: Any) -> bool:
    """False when a JSON value surely holds no NaN or infinity (a quick look at its msgpack)."""
    try:
        packed = _KEY_ENCODER.encode(value)
    except (TypeError, OverflowError, UnicodeEncodeError, ValueError):
        return True
    return _MAYBE_NONFINITE.search(packed) is not None


def _first_nonfinite(value: Any) -> float | None:
    """The first float in a JSON value that is NaN or infinite (msgspec writes them as null)."""
    if type(value) not in _CONTAINERS:
        return _scalar_nonfinite(value)
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.values() if type(node) is dict else node
        for item in items:
            if type(item) in _CONTAINERS:
                stack.append(item)
            elif _scalar_nonfinite(item) is not None:
                return float(item)
    return None


def _scalar_nonfinite(value: object) -> float | None:
    """`value` itself when it is a float that is not finite."""
    if isinstance(value, float) and type(value) is float and not math.isfinite(value):
        return value
    return None


def value_key(value: Any) -> bytes | None:
    """Bytes that tell JSON values apart (1, 1.0 and true differ; so do NaN and null), for cache
    keys; None when a value cannot be keyed (a lone surrogate, an integer past 64 bits).
    """
    try:
        return _KEY_ENCODER.encode(value)
    except (TypeError, OverflowError, UnicodeEncodeError, ValueError):
        return None
