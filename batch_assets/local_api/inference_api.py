"""The batch endpoints served synchronously, as any OpenAI-compatible server would."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request, Response

from batch_assets.local_api.errors import error_envelope
from batch_assets.local_api.local_models import (
    SUPPORTED_ENDPOINTS,
    AnswerTimedOut,
    RequestRejected,
    respond,
)
from batch_assets.local_api.web import engine_of, json_body, json_response

router = APIRouter()

# Answers are built here, off the event loop, so /health and polls answer while one is slow.
# Each answer's work is bounded (see local_models) and stops at the sync timeout, which frees its
# worker; waiting no longer than the timeout is the last line of defence.
ANSWER_WORKERS = 4
_workers = ThreadPoolExecutor(max_workers=ANSWER_WORKERS, thread_name_prefix="local-models")


def _answer_now(
    path: str, body: dict[str, Any], created: int, timeout: float, deadline: float
) -> Response:
    """Answer one body (in a worker thread): the 200 answer or the rejection, serialized."""
    try:
        return json_response(respond(path, body, created=created, deadline=deadline))
    except AnswerTimedOut:
        return _timed_out(timeout)
    except RequestRejected as rejected:
        return json_response(rejected.envelope(), rejected.status_code)


def _timed_out(seconds: float) -> Response:
    """The 504 sent when an answer takes longer than the sync timeout."""
    message = (
        f"The local model did not answer within {seconds:g} seconds "
        "(the server's sync_timeout_seconds); the request timed out."
    )
    return json_response(error_envelope(message, type="server_error", code="timeout"), 504)


async def _answer(request: Request) -> Response:
    body = await json_body(request)
    if body.get("stream"):
        return json_response(
            RequestRejected(
                "Streaming is not supported by the local Batch API.", param="stream"
            ).envelope(),
            400,
        )
    settings = engine_of(request).settings
    timeout = settings.sync_timeout_seconds
    deadline = time.monotonic() + timeout
    work = asyncio.get_running_loop().run_in_executor(
        _workers, _answer_now, request.url.path, body, int(settings.now()), timeout, deadline
    )
    try:
        return await asyncio.wait_for(work, timeout)
    except TimeoutError:
        return _timed_out(timeout)


for _endpoint in SUPPORTED_ENDPOINTS:
    router.add_api_route(_endpoint, _answer, methods=["POST"], name=_endpoint)
