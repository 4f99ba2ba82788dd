"""What every API call passes first: request ids, auth, call counts, injected 429/503, delays."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import random
import re
import time
from collections import Counter
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batch_assets.local_api import ids
from batch_assets.local_api.errors import APIError, error_envelope, server_error, shown
from batch_assets.local_api.files_api import MAX_UPLOAD_BYTES
from batch_assets.local_api.local_models import SUPPORTED_ENDPOINTS
from batch_assets.local_api.multipart_upload import FORM_OVERHEAD_BYTES

_OBJECT_ID = re.compile(r"/(file-[A-Za-z0-9]+|batch_[0-9a-f]+)")
MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
WRONG_KEY_MESSAGE = "Incorrect API key provided. The local Batch API was started with another key."
HOLD_STEP_SECONDS = 0.05
MAX_CONTROL_BODY_BYTES = 1024 * 1024
"""Bodies of the control endpoints (create a batch, change settings, ...): OpenAI's are small."""
MAX_INFERENCE_BODY_BYTES = 16 * 1024 * 1024
"""Bodies of the synchronous endpoints (`/v1/chat/completions`, ...)."""
MAX_UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES
"""Bodies of `POST /v1/files`: the largest file and the form around it."""

log = logging.getLogger(__name__)


def body_cap(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    if path.rstrip("/") == "/v1/files":
        return MAX_UPLOAD_BODY_BYTES
    if path in SUPPORTED_ENDPOINTS:
        return MAX_INFERENCE_BODY_BYTES
    return MAX_CONTROL_BODY_BYTES


def _body_too_large(scope: Scope, cap: int, size: str) -> APIError:
    return APIError(
        413,
        f"Request body too large: {shown(scope['method'])} {shown(scope.get('path', ''))} "
        f"accepts at most {cap:,} bytes, and this one has {size}.",
    )


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, if it sent one."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _capped_receive(receive: Receive, scope: Scope, cap: int) -> Receive:
    """`receive` that raises a 413 `APIError` once the body passes `cap` bytes."""
    received = 0

    async def receive_capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap:
                raise _body_too_large(scope, cap, "more")
        return message

    return receive_capped


class GatewayStats:
    """Counts of API calls by method and route, and of the 429/503 answers injected."""

    def __init__(self) -> None:
        self._calls: Counter[str] = Counter()
        self.injected_errors = 0

    def record(self, method: str, path: str) -> None:
        """Count one call, with object ids folded into `{id}`."""
        self._calls[f"{method} {_OBJECT_ID.sub('/{id}', path)}"] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counts so far and their total."""
        return {
            "total": sum(self._calls.values()),
            "calls": dict(self._calls),
            "injected_errors": self.injected_errors,
        }

    def reset(self) -> None:
        """Forget every count."""
        self._calls.clear()
        self.injected_errors = 0


class Gateway:
    """ASGI middleware in front of `/v1` and `/admin`."""

    def __init__(
        self, app: ASGIApp, *, api_key: str | None, stats: GatewayStats, engine: Any
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.stats = stats
        self.engine = engine
        self._random = random.Random(0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        request_id = (b"x-request-id", ids.request_id().encode())

        async def tracked_send(message: Message) -> None:
            """`send` that gives the answer a fresh `x-request-id: req_<32 hex>`, as OpenAI does,
            and notes that the answer has started."""
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), request_id]}
            await send(message)

        try:
            await self._handle(scope, receive, tracked_send)
        except ClientDisconnect:
            return
        except APIError as exc:  # the body cap, raised where no route's handler catches it
            if started:
                raise
            await JSONResponse(exc.envelope(), exc.status_code)(scope, receive, tracked_send)
        except Exception:
            if started:  # too late to answer: uvicorn logs it and drops the connection
                raise
            # Answered here, inside the request id: Starlette's own 500 would go out without it.
            log.exception("unhandled error in %s %s", scope["method"], scope.get("path", ""))
            error = server_error()
            await JSONResponse(error.envelope(), error.status_code)(scope, receive, tracked_send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Auth, counts, injected errors and the body cap, then the app."""
        path = scope.get("path", "")
        guarded = path.startswith(("/v1/", "/admin/"))
        rejection = self._authenticate(scope) if guarded else None
        if rejection is None and path.startswith("/v1/"):
            self.stats.record(scope["method"], path)
            rejection = self._injected_error()
        if rejection is not None:
            await rejection(scope, receive, send)
            return
        cap = body_cap(path)
        declared = _declared_length(scope)
        if declared is not None and declared > cap:
            # Refused before reading a byte of the body; uvicorn discards what the client sends.
            raise _body_too_large(scope, cap, f"{declared:,}")
        receive = _capped_receive(receive, scope, cap)
        if guarded and scope["method"] == "POST" and path.rstrip("/") == "/v1/batches":
            await self._held_create(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _held_create(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Create a batch, held by `create_delay_seconds` and `create_reply_delay_seconds`."""
        settings = self.engine.settings
        if settings.create_delay_seconds > 0:
            # A client that leaves during this hold gets no batch, as if its request never came.
            messages: list[Message] = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                messages.append(message)
                if not message.get("more_body", False):
                    break
            try:
                # Once the body is read, the next message only comes when the client leaves.
                message = await asyncio.wait_for(receive(), settings.create_delay_seconds)
            except TimeoutError:
                pass
            else:
                if message["type"] == "http.disconnect":
                    return
                messages.append(message)
            original_receive = receive

            async def replay() -> Message:
                return messages.pop(0) if messages else await original_receive()

            receive = replay
        if settings.create_reply_delay_seconds > 0:
            original_send = send

            async def held_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    # Read the setting again on each step: lowering it releases held answers.
                    since = time.monotonic()
                    engine = self.engine
                    while time.monotonic() - since < engine.settings.create_reply_delay_seconds:
                        await asyncio.sleep(HOLD_STEP_SECONDS)
                await original_send(message)

            send = held_send
        await self.app(scope, receive, send)

    def _authenticate(self, scope: Scope) -> JSONResponse | None:
        if self.api_key is None:
            return None
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse(error_envelope(MISSING_KEY_MESSAGE), status_code=401)
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return JSONResponse(
                error_envelope(WRONG_KEY_MESSAGE, code="invalid_api_key"), status_code=401
            )
        return None

    def _injected_error(self) -> JSONResponse | None:
        settings = self.engine.settings
        if settings.http_error_rate <= 0 or self._random.random() >= settings.http_error_rate:
            return None
        self.stats.injected_errors += 1
        status = 429 if self._random.random() < 0.5 else 503
        return injected_error(status, settings.retry_after_seconds)


def injected_error(status: int, retry_after_seconds: float) -> JSONResponse:
    """A simulated 429 (rate limit) or 503 (overloaded) asking to retry after the delay."""
    headers = {
        "retry-after": str(math.ceil(retry_after_seconds)),
        "retry-after-ms": str(int(retry_after_seconds * 1000)),
    }
    if status == 429:
        body = error_envelope(
            "Rate limit reached for requests (simulated by the local Batch API).",
            type="requests",
            code="rate_limit_exceeded",
        )
    else:
        body = error_envelope(
            "The server is overloaded or not ready yet (simulated by the local Batch API).",
            type="server_error",
        )
    return JSONResponse(body, status_code=status, headers=headers)
