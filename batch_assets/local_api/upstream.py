"""Requests of many batches sent to an OpenAI-compatible upstream server, a bounded number at
once, batches taking turns; 429 and 503 pause that upstream for its `retry-after`, connection
errors and other 5xx answers are retried with exponential backoff, up to `max_retries`.

The pool runs its own event loop on a thread of its own: the engine hands requests over with
`submit` and collects answers with `take`, and never waits on the network itself.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_RETRIES = 5
BACKOFF_SECONDS = 0.5
"""The first wait before retrying a connection error or a 5xx answer; doubled each time."""
MAX_BACKOFF_SECONDS = 60.0
PAUSING_STATUSES = frozenset({429, 503})
_SHOWN_TEXT_CHARS = 2000


@dataclass(frozen=True)
class UpstreamRoutes:
    """Where each model's requests go: `models` by name, else `default`."""

    default: str | None = None
    models: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: list[str]) -> UpstreamRoutes:
        """Routes from `--upstream` values: `URL` (the default) or `MODEL=URL`."""
        default: str | None = None
        models: dict[str, str] = {}
        for value in values:
            model, sep, url = value.partition("=")
            if not sep or model.startswith(("http://", "https://")):
                model, url = "", value
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"--upstream {value!r}: the URL must start with http:// or https://"
                )
            if not model:
                if default is not None:
                    raise ValueError("--upstream: give one default URL (the others as MODEL=URL)")
                default = url.rstrip("/")
            elif model in models:
                raise ValueError(f"--upstream: model {model!r} is routed twice")
            else:
                models[model] = url.rstrip("/")
        return cls(default, models)

    def base_for(self, model: str | None) -> str | None:
        """The upstream base URL (ending in /v1, say) for a model; None if none serves it."""
        return self.models.get(model or "", self.default)

    def url_for(self, model: str | None, path: str) -> str | None:
        """Where a request line with this model and url (`/v1/...`) is sent."""
        base = self.base_for(model)
        if base is None:
            return None
        return base + (path.removeprefix("/v1") if path.startswith("/v1/") else path)


@dataclass(frozen=True)
class UpstreamConfig:
    """How the pool talks to its upstreams."""

    routes: UpstreamRoutes
    api_key_env: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_seconds: float = BACKOFF_SECONDS

    def api_key(self) -> str | None:
        """The key for the upstreams, read from the environment each time (never stored)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class UpstreamAnswer(NamedTuple):
    """The final answer to one request: the upstream's status and body, or why there is none."""

    status_code: int | None  # None: no HTTP answer (connection errors, timeouts) to the end
    body: dict[str, Any] | None
    failure: str | None  # why there is no answer, when status_code is None
    attempts: int


@dataclass(eq=False)
class _Request:
    batch_id: str
    key: int  # the caller's name for the request (its line in the batch, say)
    url: str
    body: bytes
    attempts: int = 0
    dropped: bool = False  # its batch was forgotten: no more tries, no answer


class UpstreamPool:
    """Send requests to the upstreams, at most `concurrency` at once across all batches."""

    def __init__(
        self, config: UpstreamConfig, on_answer: Callable[[str], None] | None = None
    ) -> None:
        """`on_answer(batch_id)` is called (on the pool's thread) when an answer comes back."""
        if config.concurrency < 1:
            raise ValueError("upstream concurrency must be at least 1")
        self.config = config
        self._on_answer = on_answer
        self._lock = threading.Lock()
        self._queues: OrderedDict[str, deque[_Request]] = OrderedDict()
        self._done: dict[str, list[tuple[int, UpstreamAnswer]]] = {}
        self._in_flight: dict[str, set[_Request]] = {}
        self._paused_until: dict[str, float] = {}  # upstream base URL -> time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._idle: list[asyncio.Future[None]] = []  # workers waiting for a request
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="upstream-pool", daemon=True)
        self._thread.start()

    def submit(self, batch_id: str, key: int, url: str, body: dict[str, Any] | bytes) -> None:
        """Queue one request of a batch; its answer comes back through `take` under `key`."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self._lock:
            self._queues.setdefault(batch_id, deque()).append(_Request(batch_id, key, url, data))
        self._loop.call_soon_threadsafe(self._wake.set)

    def take(self, batch_id: str) -> list[tuple[int, UpstreamAnswer]]:
        """The answers of the batch's requests finished since the last call, by key."""
        with self._lock:
            return self._done.pop(batch_id, [])

    def has_answers(self, batch_id: str) -> bool:
        """Whether answers of the batch wait to be taken."""
        with self._lock:
            return bool(self._done.get(batch_id))

    def pending(self, batch_id: str) -> int:
        """The batch's requests queued or in flight, not yet taken back."""
        with self._lock:
            queued = len(self._queues.get(batch_id, ()))
            return queued + len(self._in_flight.get(batch_id, ()))

    def forget(self, batch_id: str) -> None:
        """Send no more of the batch's requests (none queued, no further try of those in flight)
        and drop its answers not yet taken, and those of requests in flight."""
        with self._lock:
            self._queues.pop(batch_id, None)
            self._done.pop(batch_id, None)
            for request in self._in_flight.pop(batch_id, ()):
                request.dropped = True

    def close(self) -> None:
        """Stop sending; requests in flight are abandoned."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._wake.set)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        # aiohttp: about a quarter of httpx's CPU per request (~0.3 ms against ~1.3 ms here);
        # imported here, as a pool starts (~0.2 s), not by every process that reads settings.
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.config.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            workers = [
                asyncio.create_task(self._work(session)) for _ in range(self.config.concurrency)
            ]
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                self._notify_all()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _notify_all(self) -> None:
        for waiter in self._idle:
            if not waiter.done():
                waiter.set_result(None)
        self._idle.clear()

    def _next(self) -> _Request | None:
        """The next request to send: the first queued of the batch whose turn it is."""
        with self._lock:
            for batch_id in list(self._queues):
                queue = self._queues[batch_id]
                if not queue:
                    del self._queues[batch_id]
                    continue
                request = queue.popleft()
                self._queues.move_to_end(batch_id)
                self._in_flight.setdefault(batch_id, set()).add(request)
                return request
        return None

    async def _work(self, session: aiohttp.ClientSession) -> None:
        while not self._closed:
            request = self._next()
            if request is None:
                waiter = self._loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            try:
                answer = await self._send(session, request)
            except Exception as exc:  # a bug here must not stop the worker or lose the request
                log.exception("sending a request to %s failed", _origin(request.url))
                failure = f"{type(exc).__name__}: {exc}"
                answer = UpstreamAnswer(None, None, failure, request.attempts)
            with self._lock:
                if request.dropped:
                    continue
                self._in_flight[request.batch_id].discard(request)
                self._done.setdefault(request.batch_id, []).append((request.key, answer))
            if self._on_answer is not None:
                self._on_answer(request.batch_id)

    async def _send(self, session: aiohttp.ClientSession, request: _Request) -> UpstreamAnswer:
        """Send until there is a final answer or no try is left."""
        base = _origin(request.url)
        headers = {"content-type": "application/json"}
        key = self.config.api_key()
        if key:
            headers["authorization"] = f"Bearer {key}"
        while True:
            await self._wait_for(base)
            if request.dropped:
                return UpstreamAnswer(None, None, "dropped", request.attempts)
            request.attempts += 1
            last_try = request.attempts > self.config.max_retries
            try:
                async with session.post(request.url, data=request.body, headers=headers) as reply:
                    status, content, reply_headers = reply.status, await reply.read(), reply.headers
            except (_client_error(), TimeoutError) as exc:
                if last_try:
                    failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    return UpstreamAnswer(None, None, failure, request.attempts)
                await asyncio.sleep(self._backoff(request.attempts))
                continue
            if last_try or (status < 500 and status not in PAUSING_STATUSES):
                return UpstreamAnswer(status, _body_of(status, content), None, request.attempts)
            wait = _retry_after(reply_headers)
            if status in PAUSING_STATUSES:
                wait = self._backoff(request.attempts) if wait is None else wait
                self._paused_until[base] = max(
                    self._paused_until.get(base, 0.0), time.monotonic() + wait
                )
            else:
                await asyncio.sleep(self._backoff(request.attempts) if wait is None else wait)

    async def _wait_for(self, base: str) -> None:
        """Wait while the upstream asked to be left alone (429 or 503 with retry-after)."""
        while (delay := self._paused_until.get(base, 0.0) - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    def _backoff(self, attempts: int) -> float:
        return min(MAX_BACKOFF_SECONDS, self.config.backoff_seconds * 2.0 ** (attempts - 1))


def _client_error() -> type[Exception]:
    import aiohttp

    return aiohttp.ClientError


def _origin(url: str) -> str:
    parsed = urlsplit(url)
    return f"{parsed.scheme}://{parsed.netloc}"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait an answer asks for: `retry-after-ms`, or `retry-after` in seconds or as a date."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body_of(status: int, content: bytes) -> dict[str, Any]:
    """The answer's JSON object, or an error envelope holding the start of its text."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    text = content[:_SHOWN_TEXT_CHARS].decode("utf-8", "replace")
    message = f"The upstream answered {status} with a body that is not a JSON object: {text}"
    return {"error": {"message": message, "type": "upstream_error", "param": None, "code": None}}
