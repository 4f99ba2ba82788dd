"""`/admin`: read and change the simulation settings at runtime, and count API calls and the
synchronous calls' answers."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from batch_assets.local_api.errors import APIError, shown
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.web import engine_of, json_body, json_response

router = APIRouter(prefix="/admin")


@router.get("/settings")
def read_settings(request: Request) -> Response:
    """The simulation settings in force."""
    return json_response(engine_of(request).settings.model_dump())


@router.patch("/settings")
async def change_settings(request: Request) -> Response:
    """Change some settings; the rest stay as they are."""
    engine = engine_of(request)
    changes = await json_body(request)
    try:
        settings = Simulation.model_validate({**engine.settings.model_dump(), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = shown(".".join(str(part) for part in first["loc"]))
        raise APIError(400, f"Invalid setting '{field}': {first['msg']}.", param=field) from None
    engine.settings = settings
    engine.wake()
    request.app.state.answer_hold.settings_changed()
    return json_response(settings.model_dump())


@router.get("/stats")
def read_stats(request: Request) -> Response:
    """How many calls each API route has answered since start or the last reset."""
    return json_response(request.app.state.gateway_stats.snapshot())


@router.delete("/stats")
def reset_stats(request: Request) -> Response:
    """Start counting API calls from zero."""
    request.app.state.gateway_stats.reset()
    return json_response(request.app.state.gateway_stats.snapshot())


@router.get("/sync_stats")
def read_sync_stats(request: Request) -> Response:
    """The synchronous calls in flight now and at most, received, answered, faulted, and how
    often each body was answered, since start or the last reset."""
    return json_response(request.app.state.sync_stats.snapshot())


@router.delete("/sync_stats")
def reset_sync_stats(request: Request) -> Response:
    """Start counting the synchronous calls from zero (those in flight stay counted)."""
    request.app.state.sync_stats.reset()
    return json_response(request.app.state.sync_stats.snapshot())
