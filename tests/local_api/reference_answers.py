"""The slow implementations the local API's fast paths replaced, kept as references for tests.

The other references still live in the package, as the slow paths the fast ones fall back to:
`check_body_values` (for `check_templated_body`), `read_schema_format` (for `schema_format`'s
cache) and `instance_for` (for `SchemaPlan.instance`).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
import struct
from fractions import Fraction
from typing import Any

_ALPHANUMERIC = string.digits + string.ascii_uppercase + string.ascii_lowercase
_MAY_HOLD_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def reference_stable_digest(*parts: object) -> str:
    """The answer digest: blake2b (16 bytes) of the parts as one sorted msgpack array, written
    by hand below; a part msgpack cannot hold as 0xc1, its length and its sorted json.dumps."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(_sized(len(parts), 0x90, 16, (None, b"\xdc", b"\xdd")))
    for part in parts:
        try:
            digest.update(reference_sorted_msgpack(part))
        except (OverflowError, UnicodeEncodeError):
            text = json.dumps(part, sort_keys=True, ensure_ascii=False, default=repr)
            raw = text.encode("utf-8", "surrogatepass")
            digest.update(b"\xc1" + len(raw).to_bytes(8, "little") + raw)
    return digest.hexdigest()


def reference_sorted_msgpack(value: object) -> bytes:
    """A JSON value as msgpack with every object's keys sorted, smallest forms first (ints
    past 64 bits raise OverflowError, lone surrogates UnicodeEncodeError)."""
    if value is None:
        return b"\xc0"
    if value is False or value is True:
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        return _packed_int(value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _sized(len(raw), 0xA0, 32, (b"\xd9", b"\xda", b"\xdb")) + raw
    if isinstance(value, list):
        head = _sized(len(value), 0x90, 16, (None, b"\xdc", b"\xdd"))
        return head + b"".join(map(reference_sorted_msgpack, value))
    assert isinstance(value, dict)
    head = _sized(len(value), 0x80, 16, (None, b"\xde", b"\xdf"))
    return head + b"".join(
        reference_sorted_msgpack(key) + reference_sorted_msgpack(value[key])
        for key in sorted(value)
    )


def _packed_int(number: int) -> bytes:
    """msgpack's smallest form of an integer."""
    if 0 <= number < 128 or -32 <= number < 0:
        return struct.pack(">b", number) if number < 0 else bytes([number])
    forms = (
        [(b"\xcc", ">B", 8), (b"\xcd", ">H", 16), (b"\xce", ">I", 32), (b"\xcf", ">Q", 64)]
        if number > 0
        else [(b"\xd0", ">b", 8), (b"\xd1", ">h", 16), (b"\xd2", ">i", 32), (b"\xd3", ">q", 64)]
    )
    for tag, form, bits in forms:
        if (number < 1 << bits) if number > 0 else (number >= -(1 << (bits - 1))):
            return tag + struct.pack(form, number)
    raise OverflowError("an integer past 64 bits")


def _sized(size: int, fix: int, fix_limit: int, tags: tuple[bytes | None, ...]) -> bytes:
    """The head of a string, array or map of `size` items or bytes."""
    if size < fix_limit:
        return bytes([fix + size])
    for tag, form, limit in zip(tags, (">B", ">H", ">I"), (1 << 8, 1 << 16, 1 << 32), strict=True):
        if tag is not None and size < limit:
            return tag + struct.pack(form, size)
    raise OverflowError("too large")


def reference_random_words(seed: int, count: int) -> list[int]:
    """The first `count` words of `AnswerRandom(seed)`, each hashed on its own: word i is the
    (i mod 8)-th little-endian 64-bit word of blake2b(seed bytes, "/", block i // 8)."""
    key = seed.to_bytes((seed.bit_length() + 8) // 8, "little", signed=True) + b"/"
    words = []
    for index in range(count):
        block = hashlib.blake2b(key + (index // 8).to_bytes(8, "little")).digest()
        words.append(int.from_bytes(block[8 * (index % 8) : 8 * (index % 8) + 8], "little"))
    return words


def reference_below(word: int, n: int) -> int:
    """A draw in [0, n) from one word (n up to 2**64): the integer part of n * word / 2**64."""
    return int(Fraction(word * n, 2**64))


def reference_encode_line(line: dict[str, Any]) -> bytes:
    """A result line as it was written: json.dumps with its default separators."""
    return (json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n").encode(
        "utf-8", "surrogatepass"
    )


def reference_decode(raw: bytes) -> Any:
    """A request line as it was read."""
    return json.loads(raw)


def reference_may_hold_surrogate(raw: bytes) -> bool:
    """The validation's surrogate pre-check as it was: the regex on every line."""
    return _MAY_HOLD_SURROGATE.search(raw) is not None


def reference_alphanumeric(length: int) -> str:
    """Base62 ids as they were drawn: one big random integer, digit by digit."""
    number = int.from_bytes(secrets.token_bytes(int(length * 0.75) + 1))
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_ALPHANUMERIC[rest])
    return "".join(chars)


def same_json(left: object, right: object) -> bool:
    """Equal as JSON values read by Python, types included (1, 1.0 and True differ; NaN is
    NaN; -0.0 is not 0.0)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return repr(left) == repr(right)
    if isinstance(left, dict):
        return list(left) == list(right) and all(  # type: ignore[call-overload]
            same_json(value, right[key])  # type: ignore[index]
            for key, value in left.items()
        )
    if isinstance(left, list):
        return len(left) == len(right) and all(  # type: ignore[arg-type]
            same_json(a, b)
            for a, b in zip(left, right, strict=True)  # type: ignore[call-overload]
        )
    return left == right
