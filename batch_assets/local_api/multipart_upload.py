"""A multipart/form-data upload read as it streams, its one file written straight to disk."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from batch_assets.local_api.errors import APIError, shown

MAX_FORM_BYTES = 64 * 1024
"""Field values and part headers together: OpenAI's forms carry a few bytes besides the file."""
FORM_OVERHEAD_BYTES = MAX_FORM_BYTES + 64 * 1024
"""Room in a Content-Length for the form around the file: fields, part headers, boundaries."""
MAX_FIELDS = 10
FILE_FIELD = "file"


class FileCap(NamedTuple):
    """The most bytes an uploaded file may have, and the answer that refuses a larger one."""

    bytes: int
    status_code: int
    message: str

    def refusal(self) -> APIError:
        """The error for a file past this cap."""
        return APIError(self.status_code, self.message, param=FILE_FIELD)


CapFor = Callable[[Mapping[str, str], str], FileCap]
"""The cap for a file part, given the fields read before it and its filename; may raise."""


@dataclass
class UploadedForm:
    """What an upload carried: its fields and, if it had one, its file staged on disk."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0


class _FormParts:
    """python-multipart's callbacks: fields into a dict, file bytes queued for the writer."""

    def __init__(self, cap_for: CapFor, content_length: int | None) -> None:
        self.form = UploadedForm()
        self.file_chunks: list[bytes] = []
        self._cap_for = cap_for
        self._content_length = content_length
        self._cap: FileCap | None = None
        self._form_bytes = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._field_name = ""
        self._field_value = bytearray()
        self._in_file = False
        self.ended = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        """The callbacks in the names python-multipart calls them by."""
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def _count_form_bytes(self, count: int) -> None:
        self._form_bytes += count
        if self._form_bytes > MAX_FORM_BYTES:
            raise APIError(
                413,
                f"The form fields of this upload are too large: at most {MAX_FORM_BYTES:,} bytes "
                "besides the file.",
            )

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._field_value = bytearray()
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_form_bytes(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_form_bytes(end - start)
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise APIError(400, "Invalid multipart form: a part has no 'name'.")
        self._field_name = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options:
            if len(self.form.fields) >= MAX_FIELDS:
                raise APIError(400, f"Invalid multipart form: more than {MAX_FIELDS} fields.")
            return
        if self._field_name != FILE_FIELD or self._cap is not None:
            raise APIError(
                400,
                f"Invalid multipart form: unexpected file in '{shown(self._field_name)}'; upload "
                f"one file, in '{FILE_FIELD}'.",
                param=FILE_FIELD,
            )
        self._in_file = True
        self.form.filename = options[b"filename"].decode("utf-8", "replace")
        self._cap = self._cap_for(self.form.fields, self.form.filename)
        if self._content_length is not None and self._content_length > (
            self._cap.bytes + FORM_OVERHEAD_BYTES
        ):
            raise self._cap.refusal()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            self._count_form_bytes(end - start)
            self._field_value += data[start:end]
            return
        assert self._cap is not None
        self.form.size += end - start
        if self.form.size > self._cap.bytes:
            raise self._cap.refusal()
        self.file_chunks.append(data[start:end])

    def on_part_end(self) -> None:
        if not self._in_file:
            self.form.fields[self._field_name] = self._field_value.decode("utf-8", "replace")

    def on_end(self) -> None:
        self.ended = True

    def take_file_chunks(self) -> list[bytes]:
        """The file bytes parsed since the last call."""
        chunks, self.file_chunks = self.file_chunks, []
        return chunks


def _boundary(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise APIError(
            400,
            f"Invalid Content-Type '{shown(content_type)}': an upload must be "
            "multipart/form-data with a boundary.",
        )
    return options[b"boundary"]


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _write_chunks(target: IO[bytes], chunks: list[bytes]) -> None:
    for chunk in chunks:
        target.write(chunk)


@asynccontextmanager
async def staged_upload(
    request: Request, target_dir: Path, cap_for: CapFor
) -> AsyncIterator[tuple[UploadedForm, Path]]:
    """The upload's form and its file staged in `target_dir` (removed on exit unless moved)."""
    boundary = _boundary(request.headers.get("content-type", ""))
    parts = _FormParts(cap_for, _content_length(request))
    parser = MultipartParser(boundary, parts.callbacks())
    with tempfile.NamedTemporaryFile(dir=target_dir, prefix="upload-", delete=False) as target:
        staged = Path(target.name)
    try:
        with staged.open("wb") as output:
            async for chunk in request.stream():
                _feed(parser, chunk)
                if parts.file_chunks:
                    await run_in_threadpool(_write_chunks, output, parts.take_file_chunks())
            _feed(parser, None)
        if not parts.ended:
            raise APIError(400, "Invalid multipart form: the body ends before its last boundary.")
        yield parts.form, staged
    finally:
        with suppress(FileNotFoundError):
            staged.unlink()


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    """Parse one chunk (None: the end of the body); malformed input is a 400."""
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except FormParserError as exc:
        raise APIError(400, f"Invalid multipart form: {shown(str(exc))}") from None
