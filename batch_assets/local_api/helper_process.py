"""A second process the batch engine hands part of a large step to, so that batches use two
cores while the server's own process keeps serving calls.

Started on first need, in the background (a fresh interpreter, not a fork of the threaded
server); until it has answered its warm-up call the engine answers alone. On a machine with a
single core it is never started.

The engine's thread writes each call to the helper's pipe itself: no feeder or manager thread
has to get the GIL from a busy engine before work reaches the helper. Calls are small (the
helper reads request lines from the file itself), so writing one never waits for the helper.
A reader thread takes the replies off their pipe as they come.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Room in each pipe, so that the helper can write its answers before the engine reads them.
PIPE_BYTES = 1 << 20


class HelperFailed(Exception):
    """The helper process died, hung, or was stopped: what it was given is to be done here."""


def _warm_up() -> bool:
    """Import the engine (and with it the local models) in the helper."""
    import batch_assets.local_api.engine  # noqa: F401

    return True


def _serve(calls: Connection, replies: Connection) -> None:
    """The helper's loop: run each call, reply with its value or what it raised."""
    while True:
        try:
            work, args = calls.recv()
        except EOFError:  # the server closed its end: it stopped
            return
        try:
            reply: tuple[bool, Any] = (True, work(*args))
        except Exception as exc:
            reply = (False, exc)
        replies.send(reply)


def _widen(connection: Connection) -> None:
    """Give a pipe `PIPE_BYTES` of room where the system allows it (Linux)."""
    setting = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setting is not None:
        with contextlib.suppress(OSError):  # beyond the system's limit: the default room
            fcntl.fcntl(connection.fileno(), setting, PIPE_BYTES)


class HelperCall(Generic[T]):
    """A call handed to the helper; its value is read when asked for."""

    def __init__(self, helper: HelperProcess, number: int) -> None:
        self._helper = helper
        self.number = number

    def done(self) -> bool:
        """Whether the helper has answered (or failed), without waiting."""
        return self._helper._answered(self.number, 0.0)

    def discard(self) -> None:
        """The value is not wanted: drop it when it comes."""
        self._helper._abandon(self.number)

    def result(self, timeout: float) -> T:
        """The call's value, waiting at most `timeout` seconds; what it raised is raised here.

        Raises HelperFailed when the helper died, hung, or was stopped."""
        if not self._helper._answered(self.number, timeout):
            self._helper.close()
            raise HelperFailed(f"the helper process did not answer within {timeout:g}s")
        succeeded, value = self._helper._take(self.number)
        if not succeeded:
            raise value
        return value  # type: ignore[no-any-return]


class HelperProcess:
    """One helper process, started on first need; `ready` tells whether it can take work.

    Calls are handed over from the engine's thread; a reader thread takes the replies off their
    pipe as they come, so that the helper never waits for room to write one (`close` may come
    from any thread)."""

    def __init__(self) -> None:
        """Nothing runs until `ready` is first asked."""
        self._lock = threading.Lock()
        self._replied = threading.Condition(self._lock)
        self._process: multiprocessing.process.BaseProcess | None = None
        self._calls: Connection | None = None
        self._sent = 0
        # What the reader thread took off the pipe, by call number (guarded by the lock).
        self._received: dict[int, tuple[bool, Any]] = {}
        self._next_reply = 0
        self._abandoned: set[int] = set()
        self._closed = False
        self._warm: HelperCall[bool] | None = None
        self._is_warm = False

    def ready(self) -> bool:
        """Whether the helper is up and warm; the first call starts it."""
        if self._closed or (os.cpu_count() or 1) < 2:
            return False
        if self._process is None:
            self._start()
        warm = self._warm
        if not self._is_warm and warm is not None and warm.done():
            self._warm = None
            try:
                self._is_warm = warm.result(0.0)
            except Exception:
                log.exception("the helper process of the batch engine failed to start")
                self.close()
        return self._is_warm and not self._closed

    def _start(self) -> None:
        try:
            context = multiprocessing.get_context("spawn")
            calls_theirs, calls = context.Pipe(duplex=False)
            replies, replies_theirs = context.Pipe(duplex=False)
            for pipe in (calls, replies):
                _widen(pipe)
            process = context.Process(
                target=_serve, args=(calls_theirs, replies_theirs), daemon=True
            )
            process.start()
            calls_theirs.close()
            replies_theirs.close()
        except Exception:
            log.exception("the batch engine could not start its helper process; it works alone")
            self._closed = True
            return
        with self._lock:
            self._process, self._calls = process, calls
        reader = threading.Thread(
            target=self._read_replies, args=(replies,), name="batch-engine-helper", daemon=True
        )
        reader.start()
        self._warm = self.submit(_warm_up)

    def _read_replies(self, replies: Connection) -> None:
        """Take each reply off the pipe as it comes, until the helper dies or is stopped."""
        try:
            while True:
                reply = replies.recv()
                with self._lock:
                    number, self._next_reply = self._next_reply, self._next_reply + 1
                    if number in self._abandoned:
                        self._abandoned.discard(number)
                    else:
                        self._received[number] = reply
                    self._replied.notify_all()
        except (EOFError, OSError) as exc:
            with self._lock:
                stopped = self._closed
            if not stopped:
                log.warning(
                    "the helper process of the batch engine died (%r); the engine works alone",
                    exc,
                )
            self.close()
        finally:
            replies.close()

    def submit(self, work: Callable[..., T], *args: Any) -> HelperCall[T] | None:
        """Hand `work(*args)` to the helper; None if it is not running (any more)."""
        calls = self._calls
        if self._closed or calls is None:
            return None
        try:
            calls.send((work, args))
        except (OSError, ValueError):  # it died, or was stopped meanwhile
            log.warning("the helper process of the batch engine stopped; the engine works alone")
            self.close()
            return None
        number, self._sent = self._sent, self._sent + 1
        return HelperCall(self, number)

    def _answered(self, number: int, timeout: float) -> bool:
        """Wait at most `timeout` seconds for call `number`'s reply; True if it is in, or if
        the helper stopped (which reading it then raises)."""
        with self._replied:
            return self._replied.wait_for(lambda: number in self._received or self._closed, timeout)

    def _take(self, number: int) -> tuple[bool, Any]:
        with self._lock:
            reply = self._received.pop(number, None)
        return reply if reply is not None else (False, HelperFailed("the helper process stopped"))

    def _abandon(self, number: int) -> None:
        with self._lock:
            if self._received.pop(number, None) is None and number >= self._next_reply:
                self._abandoned.add(number)

    def close(self) -> None:
        """Stop the helper for good (calls not answered fail with HelperFailed)."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
            calls, self._calls = self._calls, None
            self._replied.notify_all()
        if calls is not None:
            calls.close()
        if process is not None:
            process.kill()
            process.join(timeout=5)
