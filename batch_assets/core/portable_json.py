"""JSON values the Batch API can parse: numbers within a double, strings of valid Unicode.

Python reads and writes more than that: `1e400` reads as `inf`, an integer of any size reads and
writes as digits, and `"\\ud800"` reads as a lone UTF-16 surrogate. OpenAI's parser, and polars
(which reads the shards back to match answers to requests), refuse such lines, so validation
finds them and names the field (`body.temperature`, `body.messages[0].content`).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_DOUBLE = sys.float_info.max
DOUBLE_RANGE = f"±{MAX_DOUBLE!r}"
# The shortest integer beyond a double has 309 digits; every longer one is beyond it too.
DOUBLE_DIGITS = len(str(int(MAX_DOUBLE)))
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAMPLE_STRIDE = 100  # a run of DOUBLE_DIGITS digits covers 3 bytes in a row of every 100th
_DIGIT_MARKS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))  # digit: "0"
_SHORTEST_RUN = b"0" * DOUBLE_DIGITS


@dataclass(frozen=True)
class Unreadable:
    """A value the Batch API cannot parse: where it is (a JSON path, None at the top) and why."""

    path: str | None
    detail: str


@dataclass(frozen=True)
class OutOfRangeNumber:
    """A JSON number token beyond the range of a double, kept as its text."""

    token: str


def _int_beyond_double(value: int) -> bool:
    if value.bit_length() <= 1023:
        return False
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _token_beyond_double(token: str) -> bool:
    """Whether a JSON integer token is beyond a double (without converting long ones)."""
    digits = len(token) - token.startswith("-")
    if digits != DOUBLE_DIGITS:
        return digits > DOUBLE_DIGITS
    return _int_beyond_double(int(token))


def loads_marking_numbers(text: str, **options: Any) -> tuple[Any, bool]:
    """`json.loads`, with every number beyond a double read as an OutOfRangeNumber; and whether
    there was one."""
    found = False

    def marked_float(token: str) -> float | OutOfRangeNumber:
        nonlocal found
        value = float(token)
        if math.isinf(value):
            found = True
            return OutOfRangeNumber(token)
        return value

    def marked_int(token: str) -> int | OutOfRangeNumber:
        nonlocal found
        if len(token) >= DOUBLE_DIGITS and _token_beyond_double(token):
            found = True
            return OutOfRangeNumber(token)
        return int(token)

    value = json.loads(text, parse_float=marked_float, parse_int=marked_int, **options)
    return value, found


def is_valid_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode (holds no lone UTF-16 surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def may_hold_surrogate_escape(text: str) -> bool:
    """Whether JSON text escapes a UTF-16 surrogate (a pair, or a lone one); cheap."""
    return "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None


def may_hold_long_integer(data: bytes) -> bool:
    """Whether `data` holds DOUBLE_DIGITS digits in a row (as every integer beyond a double does).

    Looks at every 100th byte first, then only around three digits in a row there.
    """
    samples = data[::_SAMPLE_STRIDE].translate(_DIGIT_MARKS)
    index = samples.find(b"000")
    while index >= 0:
        at = index * _SAMPLE_STRIDE
        # A run through the samples at, at+100 and at+200 has DOUBLE_DIGITS digits in here.
        window = data[max(0, at - 300) : at + 500]
        if _SHORTEST_RUN in window.translate(_DIGIT_MARKS):
            return True
        index = samples.find(b"000", index + 3)
    return False


def _value_problem(value: object) -> str | None:
    """Why the Batch API cannot parse this scalar, or None."""
    if isinstance(value, str):
        if is_valid_unicode(value):
            return None
        return "holds a lone UTF-16 surrogate, which is not valid Unicode"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not _int_beyond_double(value):
            return None
        bits = value.bit_length()
        return f"a {bits:,}-bit integer is beyond the range of a double ({DOUBLE_RANGE})"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number (not finite)"
    if isinstance(value, OutOfRangeNumber):
        token = value.token if len(value.token) <= 40 else value.token[:37] + "..."
        return f"the number {token} is beyond the range of a double ({DOUBLE_RANGE})"
    return None


_Step = tuple["_Step | None", str | int]


def _path(step: _Step | None, root: str | None) -> str | None:
    keys: list[str | int] = []
    while step is not None:
        step, key = step
        keys.append(key)
    path = root
    for key in reversed(keys):
        if isinstance(key, int):
            path = f"{path or ''}[{key}]"
        elif _PLAIN_KEY.fullmatch(key):
            path = f"{path}.{key}" if path else key
        else:
            path = f"{path or ''}[{json.dumps(key)}]"
    return path


def find_unreadable(value: object, root: str | None = None) -> Unreadable | None:
    """The first number or string (or key) in `value` the Batch API cannot parse, in order."""
    stack: list[tuple[object, _Step | None]] = [(value, None)]
    while stack:
        item, step = stack.pop()
        if step is not None and isinstance(step[1], str) and not is_valid_unicode(step[1]):
            key = json.dumps(step[1])
            detail = f"the key {key} holds a lone UTF-16 surrogate, which is not valid Unicode"
            return Unreadable(_path(step[0], root), detail)
        problem = _value_problem(item)
        if problem is not None:
            return Unreadable(_path(step, root), problem)
        if isinstance(item, Mapping):
            children = list(item.items())
            stack.extend((child, (step, str(key))) for key, child in reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend((item[index], (step, index)) for index in reversed(range(len(item))))
    return None
