"""Counts of the synchronous /v1 calls (in flight, answered, faults, bodies), and their holds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, get_args

from batch_assets.local_api.settings import SyncFault

DIGEST_HEX_CHARS = 16


def body_digest(body: Any) -> str:
    """The first 16 hex characters of the sha256 of `body` as canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_HEX_CHARS]


class SyncStats:
    """Counts of the synchronous calls since start or the last reset, safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._max_in_flight = 0
        self._received = 0
        self._answered = 0
        self._faults: Counter[str] = Counter()
        self._bodies: Counter[str] = Counter()

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Count one call received, and in flight while the block runs."""
        with self._lock:
            self._received += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def fault(self, kind: SyncFault) -> None:
        """Count one call answered with a fault."""
        with self._lock:
            self._faults[kind] += 1

    def answered(self, digest: str) -> None:
        """Count one 200 answer to the body with this digest."""
        with self._lock:
            self._answered += 1
            self._bodies[digest] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counts so far."""
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "received": self._received,
                "answered": self._answered,
                "faults": {kind: self._faults[kind] for kind in get_args(SyncFault)},
                "answered_bodies": dict(self._bodies),
            }

    def reset(self) -> None:
        """Count from zero; calls in flight stay counted until they end."""
        with self._lock:
            self._max_in_flight = self._in_flight
            self._received = self._answered = 0
            self._faults.clear()
            self._bodies.clear()


class AnswerHold:
    """Where synchronous answers wait out `sync_seconds_per_request`, on the event loop."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def settings_changed(self) -> None:
        """Wake every held answer to measure its hold again (call on the event loop)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def hold(self, seconds: Callable[[], float]) -> None:
        """Wait until `seconds()` (read again on each settings change) have passed."""
        since = time.monotonic()
        while (left := since + seconds() - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
