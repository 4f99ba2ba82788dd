"""A second process the batch engine hands half of a large step to, so that batches use two
cores while the server's own process keeps serving calls.

Started on first need, in the background (a fresh interpreter, not a fork of the threaded
server); until it has answered its warm-up call the engine answers alone. On a machine with a
single core it is never started.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def _warm_up() -> bool:
    """Import the engine (and with it the local models) in the helper."""
    import batch_assets.local_api.engine  # noqa: F401

    return True


class HelperProcess:
    """One helper process, started on first need; `ready` tells whether it can take work."""

    def __init__(self) -> None:
        """Nothing runs until `ready` is first asked."""
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._warm: Future[bool] | None = None
        self._closed = False

    def ready(self) -> bool:
        """Whether the helper is up and warm; the first call starts it."""
        with self._lock:
            if self._closed or (os.cpu_count() or 1) < 2:
                return False
            if self._pool is None:
                self._start()
            warm = self._warm
        return warm is not None and warm.done() and warm.exception() is None

    def _start(self) -> None:
        try:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            self._warm = self._pool.submit(_warm_up)
        except Exception:
            log.exception("the batch engine could not start its helper process; it works alone")
            self._closed = True

    def submit(self, work: Callable[..., T], *args: Any) -> Future[T] | None:
        """Run `work(*args)` in the helper; None if it is not running (any more)."""
        with self._lock:
            pool = self._pool
        if pool is None:
            return None
        try:
            return pool.submit(work, *args)
        except RuntimeError:  # shut down, or broken (the helper died)
            log.warning("the helper process of the batch engine stopped; the engine works alone")
            self.close()
            return None

    def close(self) -> None:
        """Stop the helper for good (work not started is dropped)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
