"""`/v1/files`: upload, list, retrieve, download and delete."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from batch_assets.local_api import ids
from batch_assets.local_api.errors import APIError, not_found, server_error, shown
from batch_assets.local_api.expiry import FILE_EXPIRES_AFTER, expiry_seconds, form_integer
from batch_assets.local_api.multipart_upload import FileCap, staged_upload
from batch_assets.local_api.web import engine_of, int_param, json_response, list_envelope

router = APIRouter(prefix="/v1")
log = logging.getLogger(__name__)

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
MAX_BATCH_INPUT_BYTES = 200 * 1024 * 1024
# A batch input over its cap is an invalid batch file (400, as a wrong file name is); a body over
# what any upload may carry is refused as too large (413).
BATCH_INPUT_TOO_LARGE_STATUS = 400
DEFAULT_BATCH_INPUT_EXPIRY_SECONDS = 30 * 86400
COPY_CHUNK_BYTES = 1024 * 1024
STALL_STEP_SECONDS = 0.05


class DownloadCut(Exception):
    """Raised mid-response so that the server drops the connection: a simulated network cut."""


def _first_bytes(source: IO[bytes], limit: int) -> Iterator[bytes]:
    """Up to `limit` bytes of `source`, a chunk at a time."""
    left = limit
    while left > 0 and (chunk := source.read(min(COPY_CHUNK_BYTES, left))):
        left -= len(chunk)
        yield chunk


def _cut_after(path: Path, limit: int) -> Iterator[bytes]:
    """The first `limit` bytes of a file, then a dropped connection."""
    with path.open("rb") as source:
        yield from _first_bytes(source, limit)
    raise DownloadCut(f"download of {path.name} cut after {limit} bytes (simulated)")


async def _stall_after(path: Path, engine: Any) -> AsyncIterator[bytes]:
    """A file's bytes, held after `stall_downloads_after_bytes` until that setting is cleared."""
    with path.open("rb") as source:
        limit = engine.settings.stall_downloads_after_bytes
        for chunk in _first_bytes(source, limit or 0):
            yield chunk
        # Read the setting again on each step: clearing it releases held downloads.
        while engine.settings.stall_downloads_after_bytes is not None:
            await asyncio.sleep(STALL_STEP_SECONDS)
        while chunk := source.read(COPY_CHUNK_BYTES):
            yield chunk


def _file_expiry(fields: Mapping[str, str], purpose: str) -> int | None:
    """The seconds an uploaded file lives: its `expires_after`, else its purpose's default."""
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return DEFAULT_BATCH_INPUT_EXPIRY_SECONDS if purpose == "batch" else None
    return expiry_seconds(anchor, form_integer(seconds), FILE_EXPIRES_AFTER)


def _check_purpose(purpose: str | None, filename: str) -> str:
    """The upload's purpose, if it is one OpenAI knows and fits the file's name."""
    if purpose is None:
        raise APIError(400, "Missing required parameter: 'purpose'.", param="purpose")
    if purpose not in PURPOSES:
        raise APIError(
            400, f"'{shown(purpose)}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose"
        )
    if purpose == "batch" and not filename.endswith(".jsonl"):
        raise APIError(400, "Invalid file format for Batch API. Must be .jsonl")
    return purpose


def _file_cap(purpose: str | None) -> FileCap:
    """The size cap of a file uploaded for `purpose` (the largest while it is not known)."""
    if purpose == "batch":
        return FileCap(
            MAX_BATCH_INPUT_BYTES,
            BATCH_INPUT_TOO_LARGE_STATUS,
            f"File is too large: batch input files may be at most {MAX_BATCH_INPUT_BYTES:,} bytes.",
        )
    return FileCap(
        MAX_UPLOAD_BYTES,
        413,
        f"File is too large: files may be at most {MAX_UPLOAD_BYTES:,} bytes.",
    )


def _cap_before_file(fields: Mapping[str, str], filename: str) -> FileCap:
    """Checks what the fields sent before the file allow, and the file's cap."""
    purpose = fields.get("purpose")
    if purpose is not None:
        _check_purpose(purpose, filename or "upload")
    return _file_cap(purpose)


@router.post("/files")
async def create_file(request: Request) -> Response:
    """Store an uploaded file, streamed into the state directory as it arrives."""
    engine = engine_of(request)
    async with staged_upload(request, engine.store.upload_dir, _cap_before_file) as (
        form,
        staged,
    ):
        if form.filename is None:
            raise APIError(400, "Missing required parameter: 'file'.", param="file")
        filename = form.filename or "upload"
        purpose = _check_purpose(form.fields.get("purpose"), filename)
        cap = _file_cap(purpose)
        if form.size > cap.bytes:
            raise cap.refusal()
        expiry = _file_expiry(form.fields, purpose)
        created = int(engine.settings.now())
        obj = {
            "id": ids.file_id(),
            "object": "file",
            "bytes": form.size,
            "created_at": created,
            "expires_at": None if expiry is None else created + expiry,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        await run_in_threadpool(engine.store.add_file, obj, staged)
    return json_response(obj)


@router.get("/files")
def list_files(
    request: Request,
    purpose: str | None = None,
    limit: str | None = None,
    order: str = "desc",
    after: str | None = None,
) -> Response:
    """One page of files."""
    if order not in ("asc", "desc"):
        raise APIError(
            400, f"Invalid 'order': expected 'asc' or 'desc', got '{shown(order)}'.", param="order"
        )
    page_size = int_param(limit, "limit", default=10000, minimum=1, maximum=10000)
    data, has_more = engine_of(request).store.list_files(
        purpose=purpose, limit=page_size, ascending=order == "asc", after=after
    )
    return json_response(list_envelope(data, has_more))


@router.get("/files/{file_id}")
def retrieve_file(request: Request, file_id: str) -> Response:
    """One file object."""
    obj = engine_of(request).store.get_file(file_id)
    if obj is None:
        raise not_found("File", file_id)
    return json_response(obj)


@router.get("/files/{file_id}/content")
def file_content(request: Request, file_id: str) -> Response:
    """The file's bytes, streamed from disk; Range requests are honoured."""
    engine = engine_of(request)
    if engine.store.get_file(file_id) is None:
        raise not_found("File", file_id)
    path = engine.store.file_path(file_id)
    if not path.is_file():
        log.error("the content of %s is missing: no file %s", file_id, path)
        raise server_error(
            f"The content of file {file_id} is missing from the local Batch API's state "
            "directory, so it cannot be downloaded."
        )
    if engine.settings.stall_downloads_after_bytes is not None and "range" not in request.headers:
        return StreamingResponse(
            _stall_after(path, engine),
            media_type="application/octet-stream",
            headers={"content-length": str(path.stat().st_size), "accept-ranges": "bytes"},
        )
    cut = engine.settings.cut_downloads_after_bytes
    if (
        cut is not None
        and "range" not in request.headers
        and path.stat().st_size > cut
        and engine.claim_download_cut(file_id)
    ):
        return StreamingResponse(
            _cut_after(path, cut),
            media_type="application/octet-stream",
            headers={"content-length": str(path.stat().st_size), "accept-ranges": "bytes"},
        )
    return FileResponse(path, media_type="application/octet-stream")


@router.delete("/files/{file_id}")
def delete_file(request: Request, file_id: str) -> Response:
    """Delete a file and its bytes."""
    if not engine_of(request).store.delete_file(file_id):
        raise not_found("File", file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})
