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
from typing import Any

_ALPHANUMERIC = string.digits + string.ascii_uppercase + string.ascii_lowercase
_MAY_HOLD_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def reference_stable_digest(*parts: object) -> str:
    """The answer digest as it was: one json.dumps of all parts, sorted keys."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


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
