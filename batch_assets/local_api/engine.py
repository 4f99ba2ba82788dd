"""The background worker that moves batches through their statuses and answers their requests."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from batch_assets.local_api import ids
from batch_assets.local_api.errors import (
    SERVER_ERROR_MESSAGE,
    APIError,
    error_envelope,
    not_found,
)
from batch_assets.local_api.helper_process import HelperCall, HelperFailed, HelperProcess
from batch_assets.local_api.json_codec import (
    decode_json,
    encode_float_free_line,
    encode_json_line,
)
from batch_assets.local_api.local_models import BATCH_ANSWER_SECONDS, RequestRejected, respond
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.store import Store
from batch_assets.local_api.upstream import UpstreamAnswer, UpstreamPool
from batch_assets.local_api.validation import (
    ValidationOutcome,
    batch_error,
    describe_failure,
    joined_outcome,
    line_start_near,
    validate_input_file,
    validate_part,
)

log = logging.getLogger(__name__)

LINES_PER_STEP = 1000
# A step stops answering after this long (once a request is answered), so that the batch's
# progress is checkpointed and other batches get their turn.
STEP_SECONDS = 0.25
# A step this long in a batch this large is shared with the helper process (both cores).
HELPER_MIN_STEP_LINES = 200
HELPER_MIN_BATCH_LINES = 5000
# The helper's share of a step is kept between these (each side answers some of every step).
HELPER_SHARE_RANGE = (0.2, 0.8)
# How much each step's seconds per line move their averages, and how much a step the helper
# finishes first (or last) moves the correction for what else this thread does.
HELPER_RATE_WEIGHT = 0.2
HELPER_BIAS_STEP = 0.01
# An input file this large is validated in two halves, one of them in the helper process (the
# helper is started by the first such file, so that it is warm when its requests are answered).
HELPER_MIN_VALIDATION_BYTES = 1 << 20
# Far longer than half a step takes (each request stops at BATCH_ANSWER_SECONDS): a helper that
# has not answered by then is taken to hang.
HELPER_WAIT_SECONDS = 60.0
ACTIVE_WAIT_SECONDS = 0.02
IDLE_WAIT_SECONDS = 1.0
DEFAULT_OUTPUT_EXPIRY_SECONDS = 30 * 86400
UNFINISHED_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}
TIMEOUT_MESSAGE = "The request timed out while it was being processed."
# A batch whose step raises this many times in a row (not one request's fault) is failed.
MAX_STEP_FAILURES = 3
STEP_RETRY_SECONDS = 0.25
PAUSED_LOOK_SECONDS = 1.0
FILE_KINDS = ("output", "error")
TERMINAL_STATUSES = ("completed", "failed", "expired", "cancelled")
INPUT_GONE_MESSAGE = "The input file no longer exists."
UPSTREAM_LOOK_SECONDS = 0.25
"""How long a batch waiting on its upstream answers waits at most before it is looked at again
(an answer coming back makes the engine look sooner)."""
UPSTREAM_GATHER_SECONDS = 0.005
"""How long after an answer comes back the engine looks at its batch: the answers of those
milliseconds are recorded in one step (one write of the batch record, one of the journal)."""
UPSTREAM_WINDOW_PER_SLOT = 4
"""Requests of one batch sent ahead of its checkpoint, per slot of the upstream's concurrency."""


class MissingWork(Exception):
    """Checkpointed content of a batch is no longer on disk, so it cannot be published."""


class RequestResult(NamedTuple):
    """One answered request: its result line as bytes, and what it adds to the batch's counts.
    (A tuple: cheap to build for each request, and sent as a plain tuple by the helper.)"""

    custom_id: str
    encoded: bytes
    succeeded: bool
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class AnsweredLines:
    """Requests answered in one step, from `first_line` on, not yet recorded in the batch."""

    first_line: int
    end_offset: int
    results: list[RequestResult]


@dataclass
class _UpstreamWindow:
    """A batch's requests sent to the upstream past its checkpoint: the next line to send (at
    byte `next_offset`), and of each line sent its custom_id and end offset, then its result."""

    since: int  # the checkpoint's line when the window opened
    next_line: int
    next_offset: int
    sent: dict[int, tuple[str, int]] = dataclasses.field(default_factory=dict)
    answered: dict[int, tuple[RequestResult, int]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class _HelperChunk:
    """Request lines handed to the helper process: from `line`, at bytes `offset` to
    `end_offset` of the input file, answered under `settings`."""

    line: int
    offset: int
    end_offset: int
    raws: list[bytes]
    settings: Simulation
    answers: HelperCall[tuple[list[ResultFields], float]]


Prepared = ValidationOutcome | AnsweredLines | None
"""The slow part of a step, done without the engine's lock: a validation or answered requests."""


def fails_by_rate(custom_id: str, fail_rate: float, input_digest: str = "") -> bool:
    """Whether `fail_rate` picks this request to fail: a fixed choice per custom_id and input
    file content, so the same file fails the same requests, and a resubmission of some of its
    lines (other content) draws afresh.
    """
    if fail_rate <= 0:
        return False
    key = f"{input_digest}\n{custom_id}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fail_rate


def times_out_by_rate(custom_id: str, timeout_rate: float, input_digest: str = "") -> bool:
    """Whether `timeout_rate` picks this request to time out; chosen as `fails_by_rate` does."""
    # Salted so that the requests picked to time out are not the ones picked to fail.
    return fails_by_rate(f"request_timeout\n{custom_id}", timeout_rate, input_digest)


def _output_order(line: tuple[str, bytes]) -> bytes:
    # The real API does not keep input order; a hash of the custom_id mixes lines the same way
    # every time.
    return hashlib.blake2b(line[0].encode("utf-8", "surrogatepass"), digest_size=8).digest()


@dataclass(frozen=True)
class _AnswerJob:
    """What answering a batch's requests needs besides the lines (sent to the helper too)."""

    endpoint: str
    input_digest: str
    timeout_rate: float
    fail_rate: float
    created: int
    stop_at: float  # time.monotonic() after which no more requests are started


def answer_lines(job: _AnswerJob, raws: list[bytes]) -> list[RequestResult]:
    """Answer request lines in order until `job.stop_at` (at least one)."""
    results: list[RequestResult] = []
    for raw in raws:
        if results and time.monotonic() >= job.stop_at:
            break
        results.append(_result(job, decode_json(raw)))
    return results


ResultFields = tuple[str, bytes, bool, int, int]
"""A RequestResult as a plain tuple: what the helper sends back (plain tuples pickle ~6x
faster)."""


def answer_part(
    job: _AnswerJob, path: str, offset: int, count: int
) -> tuple[list[ResultFields], float]:
    """`answer_lines` for the `count` lines at byte `offset` of the input file at `path`, each
    result as its fields, and the seconds it took (run in the helper process, for at most
    `STEP_SECONDS` from the time it starts: the lines may have waited their turn)."""
    started = time.monotonic()
    job = dataclasses.replace(job, stop_at=started + STEP_SECONDS)
    with open(path, "rb") as source:
        source.seek(offset)
        raws = [source.readline() for _ in range(count)]
    fields = list(map(tuple, answer_lines(job, raws)))
    return fields, time.monotonic() - started  # type: ignore[return-value]


class _HelperShare:
    """The helper's share of a step: the one that has both sides done at the same time, from
    each side's seconds per line (moving averages), corrected by which side finished first
    (this thread also records the answers and serves the API)."""

    def __init__(self) -> None:
        """Half, until both sides have answered a step."""
        self._own: float | None = None
        self._theirs: float | None = None
        self._bias = 0.0

    def fraction(self) -> float:
        """The share of a step's lines to hand to the helper."""
        own, theirs = self._own, self._theirs
        base = 0.5 if own is None or theirs is None or own + theirs <= 0 else own / (own + theirs)
        low, high = HELPER_SHARE_RANGE
        return min(max(base + self._bias, low), high)

    def observe(self, own: tuple[float, int], theirs: tuple[float, int], done_first: bool) -> None:
        """Take in a step: (seconds, lines) of each side, and whether the helper was done first."""
        self._own = _moving_average(self._own, *own)
        self._theirs = _moving_average(self._theirs, *theirs)
        step = HELPER_BIAS_STEP if done_first else -HELPER_BIAS_STEP
        self._bias = min(max(self._bias + step, -0.3), 0.3)


def _moving_average(average: float | None, seconds: float, lines: int) -> float | None:
    if lines == 0:
        return average
    per_line = seconds / lines
    if average is None:
        return per_line
    return average + HELPER_RATE_WEIGHT * (per_line - average)


def _result(job: _AnswerJob, request: dict[str, Any]) -> RequestResult:
    """One request's result; whatever answering it raises gives it an error line instead."""
    custom_id = request["custom_id"]
    try:
        return _answered_result(job, request)
    except Exception as exc:
        log.exception("answering request %r failed", custom_id[:64])
        status_code, body = _failure_answer(exc)
        return RequestResult(custom_id, _http_line(custom_id, status_code, body), False)


def _answered_result(job: _AnswerJob, request: dict[str, Any]) -> RequestResult:
    custom_id = request["custom_id"]
    if times_out_by_rate(custom_id, job.timeout_rate, job.input_digest):
        encoded = _error_line(custom_id, "request_timeout", TIMEOUT_MESSAGE)
        return RequestResult(custom_id, encoded, False)
    failed = fails_by_rate(custom_id, job.fail_rate, job.input_digest)
    status_code, body = _answer(job.endpoint, request, failed, job.created)
    # A chat.completion holds no float (only counts, texts and the JSON text of its content).
    float_free = status_code == 200 and job.endpoint == "/v1/chat/completions"
    encoded = _http_line(custom_id, status_code, body, float_free)
    if status_code != 200:
        return RequestResult(custom_id, encoded, False)
    return RequestResult(custom_id, encoded, True, *_usage_tokens(body))


def _answer(
    endpoint: str, request: dict[str, Any], failed: bool, created: int
) -> tuple[int, dict[str, Any]]:
    if failed:
        return 500, error_envelope(SERVER_ERROR_MESSAGE, type="server_error")
    try:
        deadline = time.monotonic() + BATCH_ANSWER_SECONDS
        return 200, respond(endpoint, request["body"], created=created, deadline=deadline)
    except RequestRejected as rejected:
        return rejected.status_code, rejected.envelope()


def derived_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output or error file: fixed, so a restart never publishes it twice."""
    return "file-" + hashlib.sha256(f"{batch_id}/{kind}".encode()).hexdigest()[:22]


class BatchEngine:
    """One thread that validates, runs, expires, cancels and finalizes every batch in the store."""

    def __init__(self, store: Store, settings: Simulation) -> None:
        """With an upstream in the settings, the batches' requests are answered by it, not by
        the local models."""
        self.store = store
        self.settings = settings
        self._upstream: UpstreamPool | None = None  # for the settings' upstream, if any
        self._windows: dict[str, _UpstreamWindow] = {}
        self.lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._resumed: set[str] = set()
        self._pace: dict[str, tuple[float, float, int]] = {}
        # When a waiting batch next needs a look (monotonic), valid only under the same settings.
        self._due: dict[str, tuple[float, Simulation]] = {}
        self._next_reap = 0.0
        self._cut_files: set[str] = set()
        self._step_failures: dict[str, int] = {}
        self._pauses_logged: set[tuple[str, str]] = set()
        self._helper = HelperProcess()
        self._helper_share = _HelperShare()
        # The helper's share of each running batch's next step, handed over early.
        self._ahead: dict[str, _HelperChunk] = {}

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="batch-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker thread and wait for it."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self._helper.close()
        if self._upstream is not None:
            self._upstream.close()

    def upstream_answered(self, batch_id: str) -> None:
        """Look at the batch soon: its upstream sent an answer back (called by the pool)."""
        soon = time.monotonic() + UPSTREAM_GATHER_SECONDS
        due = self._due.get(batch_id)
        if due is None or due[0] > soon:
            self._due[batch_id] = (soon, self.settings)
            self._wake.set()

    def wake(self) -> None:
        """Look at the batches now rather than at the next tick."""
        self._wake.set()

    def claim_download_cut(self, file_id: str) -> bool:
        """True the first time a file's download is to be cut, False ever after."""
        with self.lock:
            if file_id in self._cut_files:
                return False
            self._cut_files.add(file_id)
            return True

    def add_batch(self, obj: dict[str, Any], progress: dict[str, Any]) -> None:
        """Record a new batch and get to work on it."""
        self.store.add_batch(obj, progress)
        self.wake()

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Move a batch to `cancelling`; the worker finishes the cancellation."""
        with self.lock:
            loaded = self.store.get_batch_with_progress(batch_id)
            if loaded is None:
                raise not_found("Batch", batch_id, param="batch_id")
            obj, progress = loaded
            if obj["status"] != "cancelling":
                _refuse_cancel_of_ending_batch(obj, progress)
                obj["status"] = "cancelling"
                obj["cancelling_at"] = int(self.settings.now())
                self.store.save_batch(obj, progress)
        self._due.pop(batch_id, None)
        self.wake()
        return obj

    def _run(self) -> None:
        while not self._stopping.is_set():
            busy, timeout = False, IDLE_WAIT_SECONDS
            try:
                busy, timeout = self._look_at_batches()
            except Exception:
                log.exception("the batch engine could not list its batches; it will try again")
            if not busy:
                self._wake.wait(timeout)
                self._wake.clear()

    def _follow_upstream_settings(self) -> None:
        """Make the upstream pool fit the settings: a new one when they changed (requests in
        flight are dropped and sent again through it), none without an upstream."""
        config = self.settings.upstream_config()
        if self._upstream is not None and self._upstream.config == config:
            return
        if self._upstream is not None:
            self._upstream.close()
            self._windows.clear()
        self._upstream = (
            None if config is None else UpstreamPool(config, on_answer=self.upstream_answered)
        )

    def _look_at_batches(self) -> tuple[bool, float]:
        """Advance every batch that is due; whether any has more to do now, and how long to wait."""
        self._follow_upstream_settings()
        busy = False
        timeout = IDLE_WAIT_SECONDS
        for batch_id in self.store.active_batch_ids():
            if self._stopping.is_set():
                break
            due = self._due.get(batch_id)
            if due is None or due[1] is not self.settings or due[0] <= time.monotonic():
                busy = self._advance_safely(batch_id) or busy
                due = self._due.get(batch_id)
            wait = ACTIVE_WAIT_SECONDS if due is None else due[0] - time.monotonic()
            timeout = min(timeout, max(wait, 0.0))
        try:
            self._reap_expired_files()
        except Exception:
            log.exception("the batch engine could not delete expired files; it will try again")
        return busy, timeout

    def _advance_safely(self, batch_id: str) -> bool:
        """`_advance`, where a step that raises is tried again and fails the batch in the end."""
        try:
            busy = self._advance(batch_id)
        except Exception as exc:
            failures = self._step_failures.get(batch_id, 0) + 1
            self._step_failures[batch_id] = failures
            log.exception("the batch engine failed a step of %s (%d in a row)", batch_id, failures)
            # The next try starts again from the last checkpoint.
            self._resumed.discard(batch_id)
            self._due[batch_id] = (time.monotonic() + STEP_RETRY_SECONDS, self.settings)
            if failures >= MAX_STEP_FAILURES:
                self._fail_stuck_batch(batch_id, exc)
            return False
        self._step_failures.pop(batch_id, None)
        return busy

    def _fail_stuck_batch(self, batch_id: str, exc: Exception) -> None:
        """Give up on a batch whose step keeps raising: stamp it `failed`, saying why."""
        try:
            with self.lock:
                loaded = self.store.get_batch_with_progress(batch_id)
                if loaded is None:
                    return
                obj, progress = loaded
                reason = str(exc) if isinstance(exc, MissingWork) else describe_failure(exc)
                message = (
                    f"The local Batch API failed {MAX_STEP_FAILURES} times in a row on this "
                    f"batch while it was '{obj['status']}', and gave up: {reason}."
                )
                obj.update(
                    status="failed",
                    failed_at=int(self.settings.now()),
                    errors={"object": "list", "data": [batch_error("server_error", message)]},
                )
                progress.pop("publishing", None)
                self.store.save_batch(obj, progress)
                self._forget(batch_id)
        except Exception:
            log.exception("the batch engine could not fail %s; it will try again", batch_id)

    def _forget(self, batch_id: str) -> None:
        """Drop what the engine keeps on a batch that has reached a terminal status."""
        for kept in (self._pace, self._due, self._step_failures):
            kept.pop(batch_id, None)
        ahead = self._ahead.pop(batch_id, None)
        if ahead is not None:
            ahead.answers.discard()
        self._windows.pop(batch_id, None)
        if self._upstream is not None:
            self._upstream.forget(batch_id)
        self._resumed.discard(batch_id)
        shutil.rmtree(self.store.work_dir / batch_id, ignore_errors=True)

    def _advance(self, batch_id: str) -> bool:
        """Take one batch one step further; True if there is more to do right away.

        The lock guards the batch record; its slow part (validating the input file, answering
        requests) runs without it, so a cancel or a call on another batch lands between steps.
        """
        prepared = self._prepare(batch_id)
        with self.lock:
            loaded = self.store.get_batch_with_progress(batch_id)
            if loaded is None:
                return False
            obj, progress = loaded
            self._due.pop(batch_id, None)
            before = _checkpoint_marks(obj, progress)
            busy = self._step(obj, progress, self.settings, prepared)
            # A paced batch waiting for its next request changes nothing: skip the write.
            if _checkpoint_marks(obj, progress) != before:
                self.store.save_batch(obj, progress)
            if obj["status"] in TERMINAL_STATUSES:
                self._forget(batch_id)
            return busy

    def _prepare(self, batch_id: str) -> Prepared:
        """The slow part of the batch's next step, if it has one, done outside the lock."""
        with self.lock:
            loaded = self.store.get_batch_with_progress(batch_id)
            if loaded is None or loaded[1].get("publishing") is not None:
                return None
            obj, progress = loaded
            lines_due = self._lines_due(obj, progress) if obj["status"] == "in_progress" else 0
        if obj["status"] == "validating":
            return self._validation_outcome(obj)
        if lines_due > 0:
            answer = self._upstream_lines if self._upstream is not None else self._answer_lines
            return answer(obj, progress, lines_due, int(self.settings.now()))
        return None

    def _validation_outcome(self, obj: dict[str, Any]) -> ValidationOutcome:
        """What validating the batch's input file finds."""
        path = self.store.file_path(obj["input_file_id"])
        if not path.exists():
            return ValidationOutcome([batch_error("invalid_file", INPUT_GONE_MESSAGE)])
        if path.stat().st_size >= HELPER_MIN_VALIDATION_BYTES and self._helper.ready():
            shared = self._validated_in_halves(path, obj["endpoint"])
            if shared is not None:
                return shared
        return validate_input_file(path, obj["endpoint"])

    def _validated_in_halves(self, path: Path, endpoint: str) -> ValidationOutcome | None:
        """Validate a large file's second half in the helper while this thread validates the
        first; None when the halves do not tell the outcome alone (a line broke a rule, the
        rules among lines meet across the halves, or the helper failed): the file is then
        validated whole, so that its errors are the ones found in a single pass."""
        middle = line_start_near(path, path.stat().st_size // 2)
        theirs = self._helper.submit(validate_part, path, endpoint, middle, 2**63)
        if theirs is None:
            return None
        first = validate_part(path, endpoint, 0, middle)
        try:
            second = theirs.result(timeout=HELPER_WAIT_SECONDS)
        except HelperFailed:
            log.warning("the helper process of the batch engine failed; the engine works alone")
            self._helper.close()
            return None
        except Exception:  # whatever reading its half raised, the one pass meets it again
            return None
        return joined_outcome(path, first, second)

    def _lines_due(self, obj: dict[str, Any], progress: dict[str, Any]) -> int:
        """How many requests this step may answer (0 once the batch is past its deadline); the
        work files are brought back to the last checkpoint first."""
        if self.settings.now() >= progress["deadline"]:
            return 0
        if self._resume(obj, progress):
            self.store.save_batch(obj, progress)
        target = min(self._allowed_lines(obj["id"], progress), progress["line"] + LINES_PER_STEP)
        return target - progress["line"]

    def _step(
        self,
        obj: dict[str, Any],
        progress: dict[str, Any],
        settings: Simulation,
        prepared: Prepared,
    ) -> bool:
        """One step of the batch's status machine; True if there is more to do right away."""
        batch_id, status, now = obj["id"], obj["status"], settings.now()
        publishing = progress.get("publishing")
        if publishing is not None:
            if not self._publish_files(obj, progress, now):
                self._due[batch_id] = (time.monotonic() + PAUSED_LOOK_SECONDS, settings)
                return False
            self._finish(obj, progress, publishing, now)
            return False
        if status == "validating":
            if isinstance(prepared, ValidationOutcome):
                self._validate(obj, progress, prepared, now)
            return True
        if isinstance(prepared, AnsweredLines):
            # Answered while the lock was free: kept even if the batch was cancelled meanwhile.
            self._record_answers(obj, progress, prepared)
        if status == "in_progress":
            busy = self._run_requests(obj, progress, now)
            answered = isinstance(prepared, AnsweredLines) and bool(prepared.results)
            waiting = self._upstream is not None and not answered
            if busy and waiting and obj["status"] == "in_progress":
                # The answers are on their way: look again when one comes back (or came back
                # during this step, which set the look sooner).
                assert self._upstream is not None
                wait = UPSTREAM_GATHER_SECONDS if self._upstream.has_answers(batch_id) else None
                look = time.monotonic() + (wait or UPSTREAM_LOOK_SECONDS)
                sooner = self._due.get(batch_id)
                if sooner is None or sooner[0] > look:
                    self._due[batch_id] = (look, settings)
                return False
            if not busy and obj["status"] == "in_progress":
                self._due[batch_id] = (self._next_look(batch_id, progress, now), settings)
            return busy
        if status == "finalizing":
            ready_at = progress["finalizing_since"] + settings.finalizing_seconds
            if now < ready_at:
                self._due[batch_id] = (time.monotonic() + ready_at - now, settings)
                return False
            self._begin_publishing(obj, progress, "completed")
            return True
        if status == "cancelling":
            self._write_unfinished(obj, progress, "batch_cancelled")
            self._begin_publishing(obj, progress, "cancelled")
            return True
        return False

    def _validate(
        self, obj: dict[str, Any], progress: dict[str, Any], outcome: ValidationOutcome, now: float
    ) -> None:
        """Move a validated batch on: `in_progress`, or `failed` with the errors found."""
        errors = outcome.errors or self._token_limit_errors(outcome.model, outcome.input_tokens)
        if errors:
            obj.update(
                status="failed", failed_at=int(now), errors={"object": "list", "data": errors}
            )
            return
        obj.update(status="in_progress", in_progress_at=int(now), model=outcome.model)
        obj["request_counts"]["total"] = outcome.total
        progress.update(
            total=outcome.total,
            model=outcome.model,
            input_tokens=outcome.input_tokens,
            input_digest=outcome.digest,
        )

    def _token_limit_errors(self, model: str | None, input_tokens: int) -> list[dict[str, Any]]:
        limit = self.settings.enqueued_token_limit
        if limit is None:
            return []
        enqueued = sum(
            other.get("input_tokens", 0)
            for other in self.store.in_flight_progress(("in_progress", "finalizing"))
            if other.get("model") == model
        )
        if enqueued + input_tokens <= limit:
            return []
        return [
            batch_error(
                "token_limit_exceeded",
                f"Enqueued token limit reached for {model} in organization org-local. "
                f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress "
                "batches have been completed.",
            )
        ]

    def _work_dir(self, batch_id: str) -> Path:
        """The folder of a batch's work files."""
        folder = self.store.work_dir / batch_id
        folder.mkdir(exist_ok=True)
        return folder

    def _work_path(self, batch_id: str, kind: str) -> Path:
        """Where a batch's output or error lines gather until they are published."""
        return self._work_dir(batch_id) / ("output.jsonl" if kind == "output" else "errors.jsonl")

    def _resume(self, obj: dict[str, Any], progress: dict[str, Any]) -> bool:
        """Cut the work files back to the last checkpoint the first time this process sees them;
        if one holds less than that (lost), the batch's requests start over (then True).
        """
        batch_id = obj["id"]
        if batch_id in self._resumed:
            return False
        intact = [
            _cut_back(self._work_path(batch_id, kind), progress[f"{kind}_bytes"])
            for kind in FILE_KINDS
        ]
        if not all(intact):
            log.warning("the work files of %s lost checkpointed lines; it starts over", batch_id)
            _start_over(obj, progress)
            self._pace.pop(batch_id, None)
            for kind in FILE_KINDS:
                _cut_back(self._work_path(batch_id, kind), 0)
        self._resumed.add(batch_id)
        return not all(intact)

    def _held(self, progress: dict[str, Any]) -> bool:
        """Whether `answer_at_most` keeps this batch from answering its next request."""
        limit = self.settings.answer_at_most
        return limit is not None and progress["line"] >= limit

    def _allowed_lines(self, batch_id: str, progress: dict[str, Any]) -> int:
        """How many requests simulated time and `answer_at_most` allow to be done by now."""
        limit = self.settings.answer_at_most
        cap = progress["total"] if limit is None else min(progress["total"], limit)
        if self._held(progress):
            # Once the limit is raised or cleared, the pace starts afresh from here: the time
            # held earns no requests to answer at once.
            self._pace.pop(batch_id, None)
            return cap
        seconds = self.settings.seconds_per_request
        if seconds <= 0:
            return cap
        started, paced_seconds, base = self._pace.get(batch_id, (0.0, -1.0, 0))
        if paced_seconds != seconds:
            started, paced_seconds, base = time.monotonic(), seconds, progress["line"]
            self._pace[batch_id] = (started, paced_seconds, base)
        return min(cap, base + int((time.monotonic() - started) / seconds))

    def _next_look(self, batch_id: str, progress: dict[str, Any], now: float) -> float:
        """When a paced batch may answer its next request or reaches its deadline (monotonic).

        A batch held by `answer_at_most` waits for its deadline only: a change of the settings,
        a cancel or a move of the clock makes the engine look at it again at once.
        """
        due = time.monotonic() + progress["deadline"] - now
        if self._held(progress):
            return due
        pace = self._pace.get(batch_id)
        if pace is not None and pace[1] > 0:
            started, seconds, base = pace
            due = min(due, started + (progress["line"] + 1 - base) * seconds)
        return due

    def _run_requests(self, obj: dict[str, Any], progress: dict[str, Any], now: float) -> bool:
        """Expire or finalize the batch when due; True if more requests may be answered now."""
        if now >= progress["deadline"]:
            self._write_unfinished(obj, progress, "batch_expired")
            self._begin_publishing(obj, progress, "expired")
            return True
        if progress["line"] >= progress["total"]:
            obj.update(status="finalizing", finalizing_at=int(now))
            progress["finalizing_since"] = now
            return True
        return progress["line"] < self._allowed_lines(obj["id"], progress)

    def _answer_lines(
        self, obj: dict[str, Any], progress: dict[str, Any], count: int, created: int
    ) -> AnsweredLines:
        """Answer up to `count` requests from the last checkpoint, for at most `STEP_SECONDS`
        (at least one request); reads the input file and changes nothing else.

        In a large batch, once the helper process is up, it answers the first share of the lines
        while this thread answers the rest; the answers kept run on from the checkpoint. While
        the batch runs unpaced, the helper's share of the next step is handed over before this
        thread answers its own, so that the helper does not wait between steps.
        """
        batch_id, line, offset = obj["id"], progress["line"], progress["offset"]
        job = self._answer_job(obj, progress, created)
        theirs = self._ahead_for(batch_id, line, offset, count)
        path = self.store.file_path(obj["input_file_id"])
        with path.open("rb") as source:
            if theirs is None:
                source.seek(offset)
                raws = [source.readline() for _ in range(count)]
                share = self._share(progress, count)
                theirs = self._hand_over(job, path, line, offset, raws[:share])
            else:
                source.seek(theirs.end_offset)
                raws = theirs.raws + [source.readline() for _ in range(count - len(theirs.raws))]
            if self._runs_unpaced(progress, count):
                self._hand_over_ahead(obj, progress, path, source, line + count, created)
        handed = len(theirs.raws) if theirs is not None else 0
        started = time.monotonic()
        results = answer_lines(job, raws[handed:])
        if theirs is not None:
            own = (time.monotonic() - started, len(results))
            results = self._joined(job, theirs, results, own)
        end_offset = offset + sum(len(raw) for raw in raws[: len(results)])
        return AnsweredLines(line, end_offset, results)

    def _upstream_lines(
        self, obj: dict[str, Any], progress: dict[str, Any], count: int, created: int
    ) -> AnsweredLines:
        """Send the batch's next requests (up to `count` past the checkpoint, and a window) to
        the upstream; the answers back since, as far as they run on from the checkpoint."""
        assert self._upstream is not None
        batch_id, first = obj["id"], progress["line"]
        journal = self._work_dir(batch_id) / "upstream_answers.jsonl"
        window = self._windows.get(batch_id)
        if window is None or first < window.since:  # new, or the batch started over
            if window is not None:
                self._upstream.forget(batch_id)
            window = _UpstreamWindow(first, first, progress["offset"])
            window.answered = _journaled_answers(journal, first)
            self._windows[batch_id] = window
            _rewrite_journal(journal, window.answered)  # without a line a crash cut short
        for line in [line for line in window.answered if line < first]:
            del window.answered[line]  # recorded in the checkpoint by now
        if not window.answered and _size_of(journal):
            _cut_back(journal, 0)
        last = first + min(count, UPSTREAM_WINDOW_PER_SLOT * self._upstream.config.concurrency)
        if window.next_line < last:
            self._send_upstream(obj, window, last)
        back: list[tuple[int, RequestResult, int]] = []
        for key, answer in self._upstream.take(batch_id):
            sent = window.sent.pop(key, None)
            if sent is not None:
                custom_id, end_offset = sent
                back.append((key, _upstream_result(custom_id, answer), end_offset))
        _journal_answers(journal, back)  # before they count: a restart sends none of them again
        window.answered.update((key, (result, end)) for key, result, end in back)
        results: list[RequestResult] = []
        end_offset = progress["offset"]
        while (done := window.answered.get(first + len(results))) is not None:
            results.append(done[0])
            end_offset = done[1]
        return AnsweredLines(first, end_offset, results)

    def _send_upstream(self, obj: dict[str, Any], window: _UpstreamWindow, last: int) -> None:
        """Send the lines of the window up to (not including) line `last`."""
        assert self._upstream is not None
        routes = self._upstream.config.routes
        with self.store.file_path(obj["input_file_id"]).open("rb") as source:
            source.seek(window.next_offset)
            while window.next_line < last:
                raw = source.readline()
                if not raw:
                    break
                request = decode_json(raw)
                line, window.next_offset = window.next_line, window.next_offset + len(raw)
                window.next_line += 1
                if line in window.answered:  # answered before a restart
                    continue
                body = request["body"]
                url = routes.url_for(body.get("model"), request["url"])
                if url is None:
                    result = _unrouted_result(request["custom_id"], body.get("model"))
                    window.answered[line] = (result, window.next_offset)
                    continue
                window.sent[line] = (request["custom_id"], window.next_offset)
                self._upstream.submit(obj["id"], line, url, body)

    def _answer_job(
        self, obj: dict[str, Any], progress: dict[str, Any], created: int
    ) -> _AnswerJob:
        """What answering the batch's requests under the current settings needs, for at most
        `STEP_SECONDS` from now."""
        return _AnswerJob(
            obj["endpoint"],
            progress.get("input_digest", ""),
            self.settings.timeout_rate,
            self.settings.fail_rate,
            created,
            time.monotonic() + STEP_SECONDS,
        )

    def _share(self, progress: dict[str, Any], count: int) -> int:
        """How many of this step's lines the helper process should answer (starting it if need
        be): none in a small step or batch."""
        if count < HELPER_MIN_STEP_LINES or progress["total"] < HELPER_MIN_BATCH_LINES:
            return 0
        return round(count * self._helper_share.fraction()) if self._helper.ready() else 0

    def _runs_unpaced(self, progress: dict[str, Any], count: int) -> bool:
        """Whether the lines after this step may be answered at once: no pace or limit holds
        them back, and they are many enough to share."""
        return (
            self.settings.seconds_per_request <= 0
            and self.settings.answer_at_most is None
            and progress["total"] - (progress["line"] + count) >= HELPER_MIN_STEP_LINES
        )

    def _hand_over(
        self, job: _AnswerJob, path: Path, line: int, offset: int, raws: list[bytes]
    ) -> _HelperChunk | None:
        """Give the helper the lines `raws` of the input file at `path` (from `line`, at byte
        `offset`), which it reads itself; None if it takes nothing."""
        if not raws:
            return None
        answers = self._helper.submit(answer_part, job, str(path), offset, len(raws))
        if answers is None:
            return None
        end_offset = offset + sum(len(raw) for raw in raws)
        return _HelperChunk(line, offset, end_offset, raws, self.settings, answers)

    def _hand_over_ahead(
        self,
        obj: dict[str, Any],
        progress: dict[str, Any],
        path: Path,
        source: BinaryIO,
        line: int,
        created: int,
    ) -> None:
        """Give the helper its share of the batch's next step, from `line` (where `source` is).
        The engine takes the running batches' steps in turn, and the helper their shares in the
        same order, a turn ahead."""
        count = min(LINES_PER_STEP, progress["total"] - line)
        share = self._share(progress, count)
        offset = source.tell()
        raws = [source.readline() for _ in range(share)]
        chunk = self._hand_over(self._answer_job(obj, progress, created), path, line, offset, raws)
        if chunk is not None:
            self._ahead[obj["id"]] = chunk

    def _ahead_for(self, batch_id: str, line: int, offset: int, count: int) -> _HelperChunk | None:
        """The helper's share of this step, handed over by the step before, if it still fits."""
        chunk = self._ahead.pop(batch_id, None)
        if chunk is None:
            return None
        fits = (chunk.line, chunk.offset) == (line, offset) and len(chunk.raws) <= count
        if fits and chunk.settings is self.settings:
            return chunk
        chunk.answers.discard()
        return None

    def _joined(
        self,
        job: _AnswerJob,
        theirs: _HelperChunk,
        own: list[RequestResult],
        own_time: tuple[float, int],
    ) -> list[RequestResult]:
        """The helper's answers to its lines and then `own` (answered here in `own_time`:
        seconds, lines); only the helper's if it stopped short. A helper that died or hangs is
        dropped and its lines are answered here."""
        done_first = theirs.answers.done()
        try:
            fields, seconds = theirs.answers.result(HELPER_WAIT_SECONDS)
        except HelperFailed:
            log.warning("the helper process of the batch engine failed; the engine works alone")
            self._helper.close()
            answered = answer_lines(job, theirs.raws)
        else:
            answered = list(map(RequestResult._make, fields))
            self._helper_share.observe(own_time, (seconds, len(answered)), done_first)
        return answered if len(answered) < len(theirs.raws) else answered + own

    def _record_answers(
        self, obj: dict[str, Any], progress: dict[str, Any], answered: AnsweredLines
    ) -> None:
        """Append answered requests to the work files and count them in the batch record."""
        if answered.first_line != progress["line"]:
            log.warning("answers for %s from a stale checkpoint were dropped", obj["id"])
            return
        progress["line"] += len(answered.results)
        progress["offset"] = answered.end_offset
        self._append_results(obj, progress, answered.results)

    def _append_results(
        self, obj: dict[str, Any], progress: dict[str, Any], results: list[RequestResult]
    ) -> None:
        """Append results to the work files and count them in the batch record."""
        outputs = [(r.custom_id, r.encoded) for r in results if r.succeeded]
        errors = [(r.custom_id, r.encoded) for r in results if not r.succeeded]
        progress["output_bytes"] += _append_lines(self._work_path(obj["id"], "output"), outputs)
        progress["error_bytes"] += _append_lines(self._work_path(obj["id"], "error"), errors)
        obj["request_counts"]["completed"] += len(outputs)
        obj["request_counts"]["failed"] += len(errors)
        usage = obj["usage"]
        for result in results:
            usage["input_tokens"] += result.input_tokens
            usage["output_tokens"] += result.output_tokens
            usage["total_tokens"] += result.input_tokens + result.output_tokens

    def _upstream_leftovers(self, batch_id: str, first: int) -> dict[int, RequestResult]:
        """The batch's upstream answers past line `first` not yet recorded; nothing more of it
        is sent."""
        window = self._windows.pop(batch_id, None)
        if self._upstream is None or window is None:
            return {}
        self._upstream.forget(batch_id)
        return {line: result for line, (result, _) in window.answered.items() if line >= first}

    def _write_unfinished(self, obj: dict[str, Any], progress: dict[str, Any], code: str) -> None:
        """Give every request not yet answered an error line with `code` (the answers that came
        back from the upstream past the checkpoint are kept)."""
        if progress["total"] == 0:
            return
        self._resume(obj, progress)
        kept = self._upstream_leftovers(obj["id"], progress["line"])
        self._append_results(obj, progress, list(kept.values()))
        message = UNFINISHED_MESSAGES[code]
        with (
            self.store.file_path(obj["input_file_id"]).open("rb") as source,
            self._work_path(obj["id"], "error").open("ab") as errors,
        ):
            source.seek(progress["offset"])
            for index, raw in enumerate(source, start=progress["line"]):
                if index in kept:
                    continue
                errors.write(_error_line(decode_json(raw)["custom_id"], code, message))
            progress["offset"] = source.tell()
            progress["error_bytes"] = errors.tell()
        progress["line"] = progress["total"]

    def _begin_publishing(self, obj: dict[str, Any], progress: dict[str, Any], status: str) -> None:
        """Checkpoint the complete work files (cut to size, on disk) and mark the batch as
        publishing towards `status`; from here on each publishing step can be redone.
        """
        if progress["total"] > 0:
            for kind in FILE_KINDS:
                path, size = self._work_path(obj["id"], kind), progress[f"{kind}_bytes"]
                if _size_of(path) < size:
                    raise MissingWork(_missing_message(obj["id"], kind, path, size))
                if size > 0:
                    _cut_and_sync(path, size)
        progress["publishing"] = status

    def _publish_files(self, obj: dict[str, Any], progress: dict[str, Any], now: float) -> bool:
        """Publish the output and error files from the checkpointed work files, skipping the
        steps done before a restart; False while paused at a step.
        """
        batch_id = obj["id"]
        if self._pauses_at(batch_id, "before_output"):
            return False
        for kind in FILE_KINDS:
            size = progress[f"{kind}_bytes"] if progress["total"] > 0 else 0
            file_id = derived_file_id(batch_id, kind)
            if size > 0 and self.store.get_file(file_id) is None:
                self._place(batch_id, kind, file_id, size)
                if self._pauses_at(batch_id, f"{kind}_placed"):
                    return False
                expiry = progress.get("output_expires_after") or DEFAULT_OUTPUT_EXPIRY_SECONDS
                file_obj = _output_file_object(batch_id, kind, file_id, size, expiry, now)
                # The bytes are in place already: recording them moves nothing.
                self.store.add_file(file_obj, self.store.file_path(file_id))
            if self._pauses_at(batch_id, f"after_{kind}"):
                return False
            obj[f"{kind}_file_id"] = file_id if size > 0 else None
        return True

    def _place(self, batch_id: str, kind: str, file_id: str, size: int) -> None:
        """Move a checkpointed work file to where its published file lives (done at most once)."""
        work_path, target = self._work_path(batch_id, kind), self.store.file_path(file_id)
        if _size_of(work_path) >= size:
            os.truncate(work_path, size)
            os.replace(work_path, target)
        elif not (target.exists() and target.stat().st_size == size):
            raise MissingWork(_missing_message(batch_id, kind, work_path, size))

    def _pauses_at(self, batch_id: str, step: str) -> bool:
        """Whether the `pause_publishing_at` fault holds this batch at `step`; logged once."""
        if self.settings.pause_publishing_at != step:
            return False
        if (batch_id, step) not in self._pauses_logged:
            self._pauses_logged.add((batch_id, step))
            log.warning("publishing of %s paused at step '%s'", batch_id, step)
        return True

    def _finish(
        self, obj: dict[str, Any], progress: dict[str, Any], status: str, now: float
    ) -> None:
        """Stamp the terminal status once the batch's files are published."""
        obj["status"] = status
        obj[f"{status}_at"] = int(now)
        progress.pop("publishing", None)

    def _reap_expired_files(self) -> None:
        if time.monotonic() < self._next_reap:
            return
        self._next_reap = time.monotonic() + 1.0
        for file_id in self.store.expired_file_ids(self.settings.now()):
            self.store.delete_file(file_id)


def _checkpoint_marks(obj: dict[str, Any], progress: dict[str, Any]) -> tuple[Any, ...]:
    """What changes when a step has something to save."""
    return obj["status"], progress["line"], progress.get("publishing")


def _start_over(obj: dict[str, Any], progress: dict[str, Any]) -> None:
    """Forget every answered request of a batch, to answer them again from the first line."""
    progress.update(line=0, offset=0, output_bytes=0, error_bytes=0)
    obj["request_counts"].update(completed=0, failed=0)
    obj["usage"].update(input_tokens=0, output_tokens=0, total_tokens=0)


def _size_of(path: Path) -> int:
    """A file's size; 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _cut_back(path: Path, size: int) -> bool:
    """Cut a work file back to `size` bytes (creating it if need be); False if it holds fewer."""
    with path.open("ab") as handle:
        if handle.seek(0, os.SEEK_END) < size:
            return False
        handle.truncate(size)
    return True


def _cut_and_sync(path: Path, size: int) -> None:
    """Cut a file to `size` bytes and make sure its content is on disk."""
    with path.open("r+b") as handle:
        handle.truncate(size)
        os.fsync(handle.fileno())


def _missing_message(batch_id: str, kind: str, path: Path, size: int) -> str:
    return (
        f"the {kind} lines of {batch_id} are gone from disk: {path.name} holds "
        f"{_size_of(path):,} of its {size:,} checkpointed bytes"
    )


def _output_file_object(
    batch_id: str, kind: str, file_id: str, size: int, expiry_seconds: int, now: float
) -> dict[str, Any]:
    created = int(now)
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created,
        "expires_at": created + expiry_seconds,
        "filename": f"{batch_id}_{kind}.jsonl",
        "purpose": "batch_output",
        "status": "processed",
        "status_details": None,
    }


def _refuse_cancel_of_ending_batch(obj: dict[str, Any], progress: dict[str, Any]) -> None:
    """Refuse to cancel a batch past `in_progress`, or one whose files are being published (an
    expiring batch stays `in_progress` until they are)."""
    if obj["status"] not in ("validating", "in_progress"):
        raise APIError(
            400, f"Cannot cancel a batch with status '{obj['status']}'.", param="batch_id"
        )
    ending = progress.get("publishing")
    if ending is not None:
        raise APIError(
            400,
            f"Cannot cancel a batch that is already ending: it becomes '{ending}' once its "
            "files are published.",
            param="batch_id",
        )


def _upstream_result(custom_id: str, answer: UpstreamAnswer) -> RequestResult:
    """A request's result from its upstream answer: the output line of a 200, else an error
    line with the upstream's status and body, or, with no answer at all, why."""
    if answer.status_code is None or answer.body is None:
        message = (
            f"The upstream could not be reached after {answer.attempts} tries: {answer.failure}"
        )
        encoded = _error_line(custom_id, "upstream_unreachable", message)
        return RequestResult(custom_id, encoded, False)
    encoded = _http_line(custom_id, answer.status_code, answer.body)
    if answer.status_code != 200:
        return RequestResult(custom_id, encoded, False)
    return RequestResult(custom_id, encoded, True, *_usage_tokens(answer.body))


def _journal_answers(path: Path, answers: list[tuple[int, RequestResult, int]]) -> None:
    """Append upstream answers (line, result, end offset) to the batch's journal."""
    if answers:
        rows = (
            json.dumps([line, end, result.encoded.decode(), *result[:1], *result[2:]])
            for line, result, end in answers
        )
        with path.open("a", encoding="utf-8") as journal:
            journal.write("".join(row + "\n" for row in rows))


def _rewrite_journal(path: Path, answers: dict[int, tuple[RequestResult, int]]) -> None:
    """Replace the journal by one holding just these answers."""
    temporary = path.with_suffix(".rewrite")
    temporary.unlink(missing_ok=True)
    _journal_answers(temporary, [(line, result, end) for line, (result, end) in answers.items()])
    if temporary.exists():
        os.replace(temporary, path)
    else:
        path.unlink(missing_ok=True)


def _journaled_answers(path: Path, first: int) -> dict[int, tuple[RequestResult, int]]:
    """The journal's answers from line `first` on (a line cut short by a crash is skipped)."""
    answers: dict[int, tuple[RequestResult, int]] = {}
    if not path.exists():
        return answers
    with path.open(encoding="utf-8") as journal:
        for row in journal:
            try:
                line, end, encoded, custom_id, *fields = json.loads(row)
            except ValueError:
                continue
            if line >= first:
                answers[line] = (RequestResult(custom_id, encoded.encode(), *fields), end)
    return answers


def _unrouted_result(custom_id: str, model: object) -> RequestResult:
    """The error line of a request whose model no upstream serves."""
    message = (
        f"The model '{model}' is served by no upstream of this gateway (give it one with "
        "--upstream MODEL=URL, or a default --upstream URL)."
    )
    body = error_envelope(message, type="invalid_request_error", code="model_not_found")
    return RequestResult(custom_id, _http_line(custom_id, 404, body), False)


def _failure_answer(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The HTTP 500 a request gets when answering it raised, naming the cause."""
    message = (
        f"{SERVER_ERROR_MESSAGE} (The local Batch API could not answer this request: "
        f"{describe_failure(exc)}; the traceback is on its stderr.)"
    )
    return 500, error_envelope(message, type="server_error")


def _http_line(
    custom_id: str, status_code: int, body: dict[str, Any], float_free: bool = False
) -> bytes:
    """A result line with the HTTP answer of a request, as bytes; `float_free` when the body
    was built to hold no float."""
    line = {
        "id": ids.batch_request_id(),
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": ids.request_id(), "body": body},
        "error": None,
    }
    return encode_float_free_line(line) if float_free else _encode_line(line)


def _error_line(custom_id: str, code: str, message: str) -> bytes:
    """A result line for a request that got no HTTP answer: `error` says why."""
    line = {
        "id": ids.batch_request_id(),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": message},
    }
    return _encode_line(line)


def _encode_line(line: dict[str, Any]) -> bytes:
    """One compact JSONL line; numbers that are not finite (not JSON) make it raise."""
    return encode_json_line(line)


def _usage_tokens(body: dict[str, Any]) -> tuple[int, int]:
    """The input and output tokens an answer reports (chat and responses name them apart)."""
    usage = body.get("usage") or {}
    input_tokens = usage.get("input_tokens", usage.get("prompt_tokens", 0))
    return input_tokens, usage.get("output_tokens", usage.get("completion_tokens", 0))


def _append_lines(path: Path, lines: list[tuple[str, bytes]]) -> int:
    if not lines:
        return 0
    lines.sort(key=_output_order)
    data = b"".join(encoded for _, encoded in lines)
    with path.open("ab") as handle:
        handle.write(data)
    return len(data)
