"""The batch client: every Files and Batches call the pipeline makes, over the openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import httpx2
import msgspec
from openai import APIConnectionError, AzureOpenAI, OpenAI, omit
from openai.pagination import SyncCursorPage
from openai.types import Batch, FileObject

from batch_assets.core.limits import BatchEndpoint, CompletionWindow
from batch_assets.core.storage import Location, atomic_path, open_for_reading, storage_location

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELLABLE_STATUSES = frozenset({"validating", "in_progress"})
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
DOWNLOAD_ATTEMPTS = 5
PARTIAL_CONTENT = 206
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_Item = TypeVar("_Item")
_BatchList = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True)
class BackendSettings:
    """How to reach a Batch API: OpenAI, Azure OpenAI or any compatible server."""

    api_key: str | None = None
    base_url: str | None = None
    organization: str | None = None
    project: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    timeout_seconds: float = 600.0
    max_retries: int = 5

    @property
    def host(self) -> str:
        """The backend's host, safe to show: never the key."""
        url = self.azure_endpoint or self.base_url or OPENAI_DEFAULT_BASE_URL
        return urlsplit(url).netloc or url

    def build_client(self) -> OpenAI:
        """The SDK client for these settings."""
        if self.azure_endpoint:
            # openai's AzureOpenAI overloads leave out `project`, which its __init__ takes and
            # hands on to OpenAI (the OpenAI-Project header).
            azure: AzureOpenAI = AzureOpenAI(  # type: ignore[call-overload]
                api_key=self.api_key,
                azure_endpoint=self.azure_endpoint,
                api_version=self.api_version,
                organization=self.organization,
                project=self.project,
                timeout=self.timeout_seconds,
                max_retries=self.max_retries,
            )
            return azure
        return OpenAI(
            api_key=self.api_key,
            base_url=self.base_url,
            organization=self.organization,
            project=self.project,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
        )


class BatchClient:
    """Upload, create, retrieve, list, cancel and download, each a single well-behaved call."""

    def __init__(self, client: OpenAI, host: str) -> None:
        self._client = client
        self.host = host

    @classmethod
    def connect(cls, settings: BackendSettings) -> BatchClient:
        """A client for the backend the settings name."""
        return cls(settings.build_client(), settings.host)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def upload(self, location: Location, filename: str | None = None) -> FileObject:
        """Upload a JSONL file as batch input, streamed from disk or the store, under `filename`."""
        location = storage_location(location)
        with open_for_reading(location) as handle:
            # A bare Path makes the SDK read the whole file into memory; a named handle streams.
            return self._client.files.create(
                file=(filename or location.name, handle), purpose="batch"
            )

    def find_files(
        self,
        filenames: set[str],
        *,
        purpose: str = "batch",
        max_pages: int = 10,
        page_size: int = 1000,
    ) -> dict[str, FileObject]:
        """Recent processed files of `purpose` named one of `filenames`, newest first wins."""
        found: dict[str, FileObject] = {}
        if not filenames:
            return found
        first = self._client.files.list(purpose=purpose, limit=page_size, order="desc")
        for page in _pages(first, max_pages):
            for file in page.data:
                if (
                    file.filename in filenames
                    and file.filename not in found
                    and file.status != "error"
                ):
                    found[file.filename] = file
            if len(found) == len(filenames):
                break
        return found

    def create(
        self,
        input_file_id: str,
        *,
        endpoint: BatchEndpoint,
        completion_window: CompletionWindow,
        metadata: dict[str, str],
    ) -> Batch:
        """Create a batch on an uploaded file."""
        return self._client.batches.create(
            input_file_id=input_file_id,
            endpoint=endpoint,
            completion_window=completion_window,
            metadata=metadata,
        )

    def retrieve(self, batch_id: str) -> Batch:
        """One batch."""
        return self._client.batches.retrieve(batch_id)

    def cancel(self, batch_id: str) -> Batch:
        """Ask the API to cancel a batch."""
        return self._client.batches.cancel(batch_id)

    def cancel_running(self, batch_ids: set[str]) -> tuple[list[str], list[str]]:
        """Cancel those of the batches still running: the ids cancelled, and those that had
        already ended, each sorted."""
        cancelled, ended = [], []
        for batch_id, batch in (self.find_batches(batch_ids) if batch_ids else {}).items():
            if batch.status in CANCELLABLE_STATUSES:
                self.cancel(batch_id)
                cancelled.append(batch_id)
            elif batch.status in TERMINAL_STATUSES:
                ended.append(batch_id)
        return sorted(cancelled), sorted(ended)

    def iter_batches(self, page_size: int = 100) -> Iterator[Batch]:
        """Every batch, newest first, a page of `page_size` per call."""
        yield from self._client.batches.list(limit=page_size)

    def _batch_pages(self, page_size: int, max_pages: int) -> Iterator[list[dict[str, Any]]]:
        """The batches of each list page, newest first, as plain JSON objects (at most
        `max_pages` calls): typed records are built only for the batches the caller keeps."""
        after: str | Any = omit
        for _ in range(max_pages):
            response = self._client.batches.with_raw_response.list(limit=page_size, after=after)
            page = _BatchList.decode(response.content)
            data: list[dict[str, Any]] = page.get("data") or []
            yield data
            if not page.get("has_more") or not data:
                return
            after = data[-1]["id"]

    def find_batches(
        self, batch_ids: set[str], *, extra_pages: int = 10, page_size: int = 100
    ) -> dict[str, Batch]:
        """The named batches, read from list pages (newest first) rather than one call each.

        Reads at most as many pages as the named batches fill, plus `extra_pages` for batches
        of others listed among them; batches not seen by then are retrieved one by one.
        """
        wanted = set(batch_ids)
        found: dict[str, Batch] = {}
        max_pages = -(-len(wanted) // page_size) + extra_pages
        for page in self._batch_pages(page_size, max_pages):
            for item in page:
                if item.get("id") in wanted:
                    batch = listed_batch(item)
                    found[batch.id] = batch
                    wanted.discard(batch.id)
            if not wanted:
                break
        for batch_id in wanted:
            found[batch_id] = self.retrieve(batch_id)
        return found

    def find_by_metadata(
        self, key: str, values: set[str], *, max_pages: int = 10, page_size: int = 100
    ) -> dict[str, Batch]:
        """Recent batches whose `metadata[key]` is one of `values`, newest first wins."""
        found: dict[str, Batch] = {}
        for page in self._batch_pages(page_size, max_pages):
            for item in page:
                value = (item.get("metadata") or {}).get(key)
                if value in values and value not in found:
                    found[value] = listed_batch(item)
            if len(found) == len(values):
                break
        return found

    def download(
        self, file_id: str, destination: Location, attempts: int = DOWNLOAD_ATTEMPTS
    ) -> int:
        """Stream a file to `destination`, whole or not at all, resuming cut transfers; its size.

        On an object store the transfer goes to scratch first and then up as one upload.
        """
        with atomic_path(destination) as temporary, temporary.open("wb") as out:
            return self.download_into(file_id, out, attempts)

    def download_into(self, file_id: str, out: BinaryIO, attempts: int = DOWNLOAD_ATTEMPTS) -> int:
        """Stream a file into `out` (a new, seekable file), resuming cut transfers; its size."""
        size = 0
        for attempt in range(1, attempts + 1):
            headers = {"Range": f"bytes={size}-"} if size else {}
            try:
                with self._client.files.with_streaming_response.content(
                    file_id, extra_headers=headers
                ) as response:
                    if size and response.status_code != PARTIAL_CONTENT:
                        # The server sent the whole file rather than the rest: start over.
                        out.seek(0)
                        out.truncate()
                        size = 0
                    for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                        out.write(chunk)
                        size += len(chunk)
                return size
            except (httpx2.TransportError, APIConnectionError):
                if attempt == attempts:
                    raise
        return size


def _pages(first: SyncCursorPage[_Item], max_pages: int) -> Iterator[SyncCursorPage[_Item]]:
    """`first` and the pages after it, at most `max_pages`; a page is fetched only when asked."""
    page = first
    for read in range(1, max_pages + 1):
        yield page
        if read == max_pages or not page.has_next_page():
            return
        page = page.get_next_page()


def listed_batch(item: dict[str, Any]) -> Batch:
    """A listed batch as the SDK's record: validated (fast), else built as the SDK builds it
    (leniently: a status or field newer than this SDK)."""
    try:
        return Batch.model_validate(item)
    except ValueError:  # pydantic's ValidationError
        return Batch.construct(**item)
