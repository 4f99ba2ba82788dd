"""Object ids shaped like OpenAI's: fresh on every call, never derived from content."""

from __future__ import annotations

import secrets
import string

_ALPHANUMERIC = string.digits + string.ascii_uppercase + string.ascii_lowercase
# Random bytes below 248 (4 x 62) map evenly onto the 62 letters and digits; the rest are dropped.
_KEPT_BYTES = 4 * len(_ALPHANUMERIC)
_BYTE_TO_DIGIT = bytes(ord(_ALPHANUMERIC[b % 62]) for b in range(_KEPT_BYTES)) + bytes(
    256 - _KEPT_BYTES
)
_DROPPED_BYTES = bytes(range(_KEPT_BYTES, 256))
# Bytes drawn per digit wanted: enough that a draw almost never comes up short.
_DRAW_SLACK = 8


def _alphanumeric(length: int) -> str:
    """`length` random letters and digits (base62, each equally likely), from the system's
    random source."""
    digits = b""
    while len(digits) < length:
        drawn = secrets.token_bytes(length + _DRAW_SLACK)
        digits += drawn.translate(_BYTE_TO_DIGIT, _DROPPED_BYTES)
    return digits[:length].decode("ascii")


def file_id() -> str:
    """`file-` and 22 letters or digits."""
    return "file-" + _alphanumeric(22)


def batch_id() -> str:
    """`batch_` and 32 hex digits."""
    return "batch_" + secrets.token_hex(16)


def batch_request_id() -> str:
    """`batch_req_` and 32 hex digits: the id of one output or error line."""
    return "batch_req_" + secrets.token_hex(16)


def request_id() -> str:
    """`req_` and 32 hex digits: the id the API gives one HTTP request (`x-request-id`)."""
    return "req_" + secrets.token_hex(16)


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
    return "resp_" + secrets.token_hex(24)


def response_item_id(prefix: str) -> str:
    """An output item of a response: `msg_` or `fc_`, and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


def moderation_id() -> str:
    """`modr-` and 32 hex digits."""
    return "modr-" + secrets.token_hex(16)
