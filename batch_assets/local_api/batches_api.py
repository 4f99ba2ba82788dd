"""`/v1/batches`: create, list, retrieve and cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from batch_assets.local_api import ids
from batch_assets.local_api.errors import APIError, not_found, shown
from batch_assets.local_api.expiry import BATCH_OUTPUT_EXPIRES_AFTER, expiry_seconds
from batch_assets.local_api.local_models import SUPPORTED_ENDPOINTS
from batch_assets.local_api.web import (
    engine_of,
    int_param,
    json_body,
    json_response,
    list_envelope,
)

router = APIRouter(prefix="/v1")

MAX_METADATA_KEYS, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS = 16, 64, 512


def _metadata(value: Any) -> dict[str, str] | None:
    """The batch's `metadata`: at most 16 string values under keys of up to 64 characters."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise APIError(400, "Invalid 'metadata': expected an object.", param="metadata")
    if len(value) > MAX_METADATA_KEYS:
        raise APIError(
            400,
            f"Invalid 'metadata': too many keys ({len(value)}); at most {MAX_METADATA_KEYS}.",
            param="metadata",
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY_CHARS:
            raise APIError(
                400,
                f"Invalid 'metadata': key '{shown(key)}' is longer than "
                f"{MAX_METADATA_KEY_CHARS} characters.",
                param="metadata",
            )
        if not isinstance(item, str):
            raise APIError(
                400, f"Invalid 'metadata.{key}': expected a string.", param=f"metadata.{key}"
            )
        if len(item) > MAX_METADATA_VALUE_CHARS:
            raise APIError(
                400,
                f"Invalid 'metadata.{key}': longer than {MAX_METADATA_VALUE_CHARS} characters.",
                param=f"metadata.{key}",
            )
    return value


def _output_expiry(value: Any) -> int | None:
    """The seconds a batch's output files live, if `output_expires_after` sets them."""
    if value is None:
        return None
    fields = value if isinstance(value, dict) else {}
    return expiry_seconds(fields.get("anchor"), fields.get("seconds"), BATCH_OUTPUT_EXPIRES_AFTER)


@router.post("/batches")
async def create_batch(request: Request) -> Response:
    """Create a batch in `validating`; the engine takes it from there."""
    body = await json_body(request)
    engine = engine_of(request)
    for name in ("input_file_id", "endpoint", "completion_window"):
        if name not in body:
            raise APIError(400, f"Missing required parameter: '{name}'.", param=name)
        if not isinstance(body[name], str):
            raise APIError(400, f"Invalid type for '{name}': expected a string.", param=name)
    if body["endpoint"] not in SUPPORTED_ENDPOINTS:
        raise APIError(
            400,
            f"Invalid value for 'endpoint': '{shown(body['endpoint'])}'; supported values are "
            f"{', '.join(SUPPORTED_ENDPOINTS)}.",
            param="endpoint",
        )
    if body["completion_window"] != "24h":
        raise APIError(
            400,
            f"Invalid value for 'completion_window': '{shown(body['completion_window'])}'; "
            "the only supported value is '24h'.",
            param="completion_window",
        )
    metadata = _metadata(body.get("metadata"))
    output_expiry = _output_expiry(body.get("output_expires_after"))
    input_file = await run_in_threadpool(engine.store.get_file, body["input_file_id"])
    if input_file is None:
        raise not_found("File", body["input_file_id"], param="input_file_id")
    if input_file["purpose"] != "batch":
        raise APIError(
            400,
            f"Invalid 'input_file_id': file {input_file['id']} has purpose "
            f"'{input_file['purpose']}'; a batch needs purpose 'batch'.",
            param="input_file_id",
        )
    now = engine.settings.now()
    window = engine.settings.window_seconds
    obj = {
        "id": ids.batch_id(),
        "object": "batch",
        "endpoint": body["endpoint"],
        "model": None,
        "errors": None,
        "input_file_id": input_file["id"],
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": int(now),
        "in_progress_at": None,
        "expires_at": int(now + window),
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "metadata": metadata,
    }
    progress = {
        "deadline": now + window,
        "total": 0,
        "line": 0,
        "offset": 0,
        "output_bytes": 0,
        "error_bytes": 0,
        "output_expires_after": output_expiry,
    }
    await run_in_threadpool(engine.add_batch, obj, progress)
    return json_response(obj)


@router.get("/batches")
def list_batches(request: Request, limit: str | None = None, after: str | None = None) -> Response:
    """One page of batches, newest first."""
    page_size = int_param(limit, "limit", default=20, minimum=1, maximum=100)
    data, has_more = engine_of(request).store.list_batches(limit=page_size, after=after)
    return json_response(list_envelope(data, has_more))


@router.get("/batches/{batch_id}")
def retrieve_batch(request: Request, batch_id: str) -> Response:
    """One batch object."""
    obj = engine_of(request).store.get_batch(batch_id)
    if obj is None:
        raise not_found("Batch", batch_id, param="batch_id")
    return json_response(obj)


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(request: Request, batch_id: str) -> Response:
    """Start cancelling a batch; it ends `cancelled` with its finished results kept."""
    return json_response(engine_of(request).cancel(batch_id))
