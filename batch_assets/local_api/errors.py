"""OpenAI's error envelope and the exception that carries it."""

from __future__ import annotations

from typing import Any

SHOWN_CHARS = 64
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
"""OpenAI's words for a fault of the server."""
LOGGED_SERVER_ERROR_MESSAGE = (
    f"{SERVER_ERROR_MESSAGE} (The local Batch API logged the cause to its stderr.)"
)


class APIError(Exception):
    """An HTTP error answered with OpenAI's `{"error": {message, type, param, code}}` envelope."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        """The JSON body OpenAI sends for this error."""
        return error_envelope(self.message, type=self.type, param=self.param, code=self.code)


def error_envelope(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """`{"error": {...}}` with all four keys present."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def shown(value: object) -> str:
    """Caller input as an error message quotes it: cut to `SHOWN_CHARS` characters."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def not_found(kind: str, object_id: str, *, param: str = "id") -> APIError:
    """404 for an unknown file or batch id, worded as OpenAI words it."""
    return APIError(404, f"No such {kind} object: {shown(object_id)}", param=param)


def server_error(message: str = LOGGED_SERVER_ERROR_MESSAGE) -> APIError:
    """500 for a fault of the server itself; by default OpenAI's words and where the cause is."""
    return APIError(500, message, type="server_error")
