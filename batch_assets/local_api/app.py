"""The local Batch API as an ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from batch_assets.local_api import admin_api, batches_api, files_api, inference_api
from batch_assets.local_api.engine import BatchEngine
from batch_assets.local_api.errors import APIError, error_envelope, shown
from batch_assets.local_api.gateway import Gateway, GatewayStats
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.store import Store
from batch_assets.local_api.sync_calls import AnswerHold, SyncStats
from batch_assets.local_api.web import json_response


def create_app(
    state_dir: Path, settings: Simulation | None = None, api_key: str | None = None
) -> FastAPI:
    """An app that keeps its state in `state_dir` and runs batches in a background thread (their
    requests answered by the local models, or sent to the settings' upstream)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir)
    engine = BatchEngine(store, settings or Simulation())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()
            store.close()

    app = FastAPI(title="Local Batch API", lifespan=lifespan)
    app.state.engine = engine
    app.state.gateway_stats = GatewayStats()
    app.state.sync_stats = SyncStats()
    app.state.answer_hold = AnswerHold()
    for module in (files_api, batches_api, inference_api, admin_api):
        app.include_router(module.router)

    @app.get("/health", include_in_schema=False)
    def health() -> Response:
        return json_response({"status": "ok"})

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        response = json_response(exc.envelope(), exc.status_code)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = (
            f"Invalid URL ({shown(request.method)} {shown(request.url.path)})"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return json_response(error_envelope(message), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return json_response(error_envelope(f"Invalid request: {first['msg']}.", param=param), 400)

    app.add_middleware(Gateway, api_key=api_key, stats=app.state.gateway_stats, engine=engine)
    return app
