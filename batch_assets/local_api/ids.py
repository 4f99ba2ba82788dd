"""Object ids shaped like OpenAI's."""

from __future__ import annotations

import secrets
import string

_ALPHANUMERIC = string.ascii_letters + string.digits


def file_id() -> str:
    """`file-` and 22 letters or digits."""
    return "file-" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(22))


def batch_id() -> str:
    """`batch_` and 32 hex digits."""
    return "batch_" + secrets.token_hex(16)


def batch_request_id() -> str:
    """`batch_req_` and 32 hex digits: the id of one output or error line."""
    return "batch_req_" + secrets.token_hex(16)


def request_id() -> str:
    """`req_` and 32 hex digits: the id the API gives one HTTP request."""
    return "req_" + secrets.token_hex(16)
