"""uvicorn's HTTP/1.1 protocol with a cap on the request head (request line and headers), and a
way for the app to drop a request's connection without answering."""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from batch_assets.local_api import ids
from batch_assets.local_api.errors import error_envelope

MAX_HEAD_BYTES = 64 * 1024
"""The request line and headers together; OpenAI's front end refuses heads far smaller."""
DROP_CONNECTION = "batch_assets.drop_connection"
"""The scope extension `{"close": callable}` that closes the request's connection at once: the
client gets no byte of an answer (uvicorn on its own answers 500 to an app that sends nothing)."""


def _head_too_large_answer() -> bytes:
    """A complete 431 answer in OpenAI's error envelope, closing the connection."""
    body = json.dumps(
        error_envelope(
            f"Request header fields too large: the request line and headers may have at most "
            f"{MAX_HEAD_BYTES:,} bytes."
        )
    ).encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {ids.request_id()}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadCappedProtocol(HttpToolsProtocol):
    """httptools' protocol answering 431 once a request's head passes `MAX_HEAD_BYTES`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._awaiting_head = True
        self._heads_done = 0
        self._messages_done = 0

    def on_headers_complete(self) -> None:
        extensions = self.scope.setdefault("extensions", {})
        extensions[DROP_CONNECTION] = {"close": self.transport.close}
        self._awaiting_head = False
        self._head_bytes = 0
        self._heads_done += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        self._messages_done += 1
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        # Count only chunks that are all head: fed while a head was awaited, with no head
        # or message finished by them. A chunk that mixes in a body goes uncounted.
        before = (self._heads_done, self._messages_done)
        super().data_received(data)
        if not self._awaiting_head or before != (self._heads_done, self._messages_done):
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(_head_too_large_answer())
            self.transport.close()


def uvicorn_http_options() -> dict[str, Any]:
    """The `uvicorn.Config` options that cap the request head."""
    return {"http": HeadCappedProtocol}
