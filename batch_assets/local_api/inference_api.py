"""The batch endpoints served synchronously, as any OpenAI-compatible server would."""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.types import Receive, Scope, Send

from batch_assets.local_api.engine import BatchEngine
from batch_assets.local_api.errors import SERVER_ERROR_MESSAGE, error_envelope, server_error
from batch_assets.local_api.gateway import injected_error
from batch_assets.local_api.http_protocol import DROP_CONNECTION
from batch_assets.local_api.local_models import (
    SUPPORTED_ENDPOINTS,
    AnswerTimedOut,
    RequestRejected,
    respond,
)
from batch_assets.local_api.settings import SyncFault
from batch_assets.local_api.sync_calls import AnswerHold, SyncStats, body_digest
from batch_assets.local_api.web import engine_of, json_body, json_response

router = APIRouter()

# Answers are built here, off the event loop, so /health and polls answer while one is slow.
# Each answer's work is bounded (see local_models) and stops at the sync timeout, which frees its
# worker; waiting no longer than the timeout is the last line of defence.
ANSWER_WORKERS = 4
_workers = ThreadPoolExecutor(max_workers=ANSWER_WORKERS, thread_name_prefix="local-models")
# Draws for `sync_fail_rate`: seeded, so a run's sequence of 500s is the same every time.
_fail_draws = random.Random(0)
SIMULATED_500_MESSAGE = f"{SERVER_ERROR_MESSAGE} (Simulated by the local Batch API.)"


class ConnectionCut(Exception):
    """Raised to make a server without `DROP_CONNECTION` drop the connection mid-answer."""


class DroppedConnection(Response):
    """No answer at all: the connection is closed, and the client sees it drop."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        drop = scope.get("extensions", {}).get(DROP_CONNECTION)
        if drop is None:  # another server than ours: start an answer it cannot finish
            start = {"type": "http.response.start", "status": 500}
            await send({**start, "headers": [(b"content-length", b"1")]})
            raise ConnectionCut("connection cut by sync_fault_queue (simulated)")
        drop["close"]()
        # Return once uvicorn knows the client is gone, or it would answer 500 for us.
        while (await receive())["type"] != "http.disconnect":
            pass


def _answer_now(
    path: str, body: dict[str, Any], created: int, timeout: float, deadline: float
) -> tuple[Response, str | None]:
    """Answer one body (in a worker thread): the 200 answer and the body's digest, or the
    rejection, serialized."""
    try:
        answer = json_response(respond(path, body, created=created, deadline=deadline))
    except AnswerTimedOut:
        return _timed_out(timeout), None
    except RequestRejected as rejected:
        return json_response(rejected.envelope(), rejected.status_code), None
    return answer, body_digest(body)


def _timed_out(seconds: float) -> Response:
    """The 504 sent when an answer takes longer than the sync timeout."""
    message = (
        f"The local model did not answer within {seconds:g} seconds "
        "(the server's sync_timeout_seconds); the request timed out."
    )
    return json_response(error_envelope(message, type="server_error", code="timeout"), 504)


def _take_fault(engine: BatchEngine) -> SyncFault | None:
    """The call's fault: the first of `sync_fault_queue` (taken off it), else a 500 drawn by
    `sync_fail_rate`, else None."""
    settings = engine.settings
    if settings.sync_fault_queue:
        rest = settings.sync_fault_queue[1:]
        engine.settings = settings.model_copy(update={"sync_fault_queue": rest})
        return settings.sync_fault_queue[0]
    if settings.sync_fail_rate > 0 and _fail_draws.random() < settings.sync_fail_rate:
        return "500"
    return None


def _fault_answer(fault: SyncFault, retry_after_seconds: float) -> Response:
    """What a call with this fault gets instead of its answer."""
    if fault == "cut":
        return DroppedConnection()
    if fault == "500":
        error = server_error(SIMULATED_500_MESSAGE)
        return json_response(error.envelope(), error.status_code)
    return injected_error(int(fault), retry_after_seconds)


async def _answer(request: Request) -> Response:
    """One synchronous call, counted in the sync stats from its start to its answer."""
    stats: SyncStats = request.app.state.sync_stats
    with stats.handling():
        engine = engine_of(request)
        fault = _take_fault(engine)
        await request.body()  # the whole request arrives before the hold
        hold: AnswerHold = request.app.state.answer_hold
        await hold.hold(lambda: engine.settings.sync_seconds_per_request)
        if fault is not None:
            stats.fault(fault)
            return _fault_answer(fault, engine.settings.retry_after_seconds)
        response, digest = await _answer_body(request)
        if digest is not None:
            stats.answered(digest)
        return response


async def _answer_body(request: Request) -> tuple[Response, str | None]:
    """The answer to the call's body, and the body's digest when the answer is a 200."""
    body = await json_body(request)
    if body.get("stream"):
        rejection = RequestRejected(
            "Streaming is not supported by the local Batch API.", param="stream"
        )
        return json_response(rejection.envelope(), 400), None
    settings = engine_of(request).settings
    timeout = settings.sync_timeout_seconds
    deadline = time.monotonic() + timeout
    work = asyncio.get_running_loop().run_in_executor(
        _workers, _answer_now, request.url.path, body, int(settings.now()), timeout, deadline
    )
    try:
        return await asyncio.wait_for(work, timeout)
    except TimeoutError:
        return _timed_out(timeout), None


for _endpoint in SUPPORTED_ENDPOINTS:
    router.add_api_route(_endpoint, _answer, methods=["POST"], name=_endpoint)
