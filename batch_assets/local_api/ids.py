"""Object ids shaped like OpenAI's: fresh on every call, never derived from content."""

from __future__ import annotations

import os
import string
import threading
from collections.abc import Callable

_ALPHANUMERIC = string.digits + string.ascii_uppercase + string.ascii_lowercase
# Random bytes below 248 (4 x 62) map evenly onto the 62 letters and digits; the rest are dropped.
_KEPT_BYTES = 4 * len(_ALPHANUMERIC)
_BYTE_TO_DIGIT = bytes(ord(_ALPHANUMERIC[b % 62]) for b in range(_KEPT_BYTES)) + bytes(
    256 - _KEPT_BYTES
)
_DROPPED_BYTES = bytes(range(_KEPT_BYTES, 256))
# Random bytes are read from the system this many at a time (one read serves ~1,000 ids).
_POOL_BYTES = 1 << 15


class _RandomDigits:
    """Random digits of one kind, from blocks of the system's random source (os.urandom) turned
    into digits at once; each digit is handed out once. A forked child drops what it inherited,
    so it never repeats its parent."""

    def __init__(self, digits_of: Callable[[bytes], str]) -> None:
        """Start empty: the first draw reads a block; `digits_of` turns random bytes into
        digits."""
        self._digits_of = digits_of
        self.forget()

    def take(self, count: int) -> str:
        """`count` random digits no other call is given."""
        with self._lock:
            at, end = self._at, self._at + count
            while end > len(self._pool):
                self._pool = self._pool[at:] + self._digits_of(os.urandom(_POOL_BYTES))
                at, end = 0, count
            self._at = end
            return self._pool[at:end]

    def forget(self) -> None:
        """Drop the digits not handed out yet (in a forked child)."""
        self._lock = threading.Lock()
        self._pool = ""
        self._at = 0


_HEX = _RandomDigits(bytes.hex)
# Each letter or digit equally likely (base62): bytes from 248 up are dropped, not folded.
_BASE62 = _RandomDigits(lambda drawn: drawn.translate(_BYTE_TO_DIGIT, _DROPPED_BYTES).decode())
for _digits in (_HEX, _BASE62):
    os.register_at_fork(after_in_child=_digits.forget)


def _hex(count: int) -> str:
    """`count` random bytes as hex digits."""
    return _HEX.take(2 * count)


def _alphanumeric(length: int) -> str:
    """`length` random letters and digits (base62, each equally likely), from the system's
    random source."""
    return _BASE62.take(length)


def file_id() -> str:
    """`file-` and 22 letters or digits."""
    return "file-" + _alphanumeric(22)


def batch_id() -> str:
    """`batch_` and 32 hex digits."""
    return "batch_" + _hex(16)


def batch_request_id() -> str:
    """`batch_req_` and 32 hex digits: the id of one output or error line."""
    return "batch_req_" + _hex(16)


def request_id() -> str:
    """`req_` and 32 hex digits: the id the API gives one HTTP request (`x-request-id`)."""
    return "req_" + _hex(16)


def chat_completion_id() -> str:
    """`chatcmpl-` and 29 letters or digits."""
    return "chatcmpl-" + _alphanumeric(29)


def completion_id() -> str:
    """`cmpl-` and 29 letters or digits."""
    return "cmpl-" + _alphanumeric(29)


def tool_call_id() -> str:
    """`call_` and 24 letters or digits: one function call the model makes."""
    return "call_" + _alphanumeric(24)


def response_id() -> str:
    """`resp_` and 48 hex digits."""
    return "resp_" + _hex(24)


def response_item_id(prefix: str) -> str:
    """An output item of a response: `msg_` or `fc_`, and 48 hex digits."""
    return f"{prefix}_{_hex(24)}"


def moderation_id() -> str:
    """`modr-` and 32 hex digits."""
    return "modr-" + _hex(16)
