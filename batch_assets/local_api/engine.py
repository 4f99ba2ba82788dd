"""The background worker that moves batches through their statuses and answers their requests."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from batch_assets.local_api import ids
from batch_assets.local_api.errors import APIError, error_envelope, not_found
from batch_assets.local_api.local_models import RequestRejected, respond
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.store import Store
from batch_assets.local_api.validation import batch_error, validate_input_file

log = logging.getLogger(__name__)

LINES_PER_STEP = 1000
ACTIVE_WAIT_SECONDS = 0.02
IDLE_WAIT_SECONDS = 1.0
DEFAULT_OUTPUT_EXPIRY_SECONDS = 30 * 86400
UNFINISHED_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
TIMEOUT_MESSAGE = "The request timed out while it was being processed."


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


def derived_file_id(batch_id: str, kind: str) -> str:
    """The id of a batch's output or error file: fixed, so a restart never publishes it twice."""
    return "file-" + hashlib.sha256(f"{batch_id}/{kind}".encode()).hexdigest()[:22]


class BatchEngine:
    """One thread that validates, runs, expires, cancels and finalizes every batch in the store."""

    def __init__(self, store: Store, settings: Simulation) -> None:
        self.store = store
        self.settings = settings
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
            if obj["status"] in ("validating", "in_progress"):
                obj["status"] = "cancelling"
                obj["cancelling_at"] = int(self.settings.now())
                self.store.save_batch(obj, progress)
            elif obj["status"] != "cancelling":
                raise APIError(
                    400,
                    f"Cannot cancel a batch with status '{obj['status']}'.",
                    param="batch_id",
                )
        self._due.pop(batch_id, None)
        self.wake()
        return obj

    def _run(self) -> None:
        while not self._stopping.is_set():
            busy = False
            timeout = IDLE_WAIT_SECONDS
            try:
                for batch_id in self.store.active_batch_ids():
                    if self._stopping.is_set():
                        break
                    due = self._due.get(batch_id)
                    if due is None or due[1] is not self.settings or due[0] <= time.monotonic():
                        busy = self._advance(batch_id) or busy
                        due = self._due.get(batch_id)
                    wait = ACTIVE_WAIT_SECONDS if due is None else due[0] - time.monotonic()
                    timeout = min(timeout, max(wait, 0.0))
                self._reap_expired_files()
            except Exception:
                log.exception("the batch engine failed a step; it will try again")
            if not busy:
                self._wake.wait(timeout)
                self._wake.clear()

    def _advance(self, batch_id: str) -> bool:
        """Take one batch one step further; True if there is more to do right away."""
        with self.lock:
            loaded = self.store.get_batch_with_progress(batch_id)
            if loaded is None:
                return False
            obj, progress = loaded
            self._due.pop(batch_id, None)
            settings = self.settings
            now = settings.now()
            status, line = obj["status"], progress["line"]
            busy = False
            if status == "validating":
                self._validate(obj, progress, now)
                busy = True
            elif status == "in_progress":
                busy = self._run_requests(obj, progress, now)
                if not busy and obj["status"] == "in_progress":
                    self._due[batch_id] = (self._next_look(batch_id, progress, now), settings)
            elif status == "finalizing":
                ready_at = progress["finalizing_since"] + settings.finalizing_seconds
                if now >= ready_at:
                    self._finish(obj, progress, "completed", now)
                else:
                    self._due[batch_id] = (time.monotonic() + ready_at - now, settings)
            elif status == "cancelling":
                self._write_unfinished(obj, progress, "batch_cancelled")
                self._finish(obj, progress, "cancelled", now)
            else:
                return False
            # A paced batch waiting for its next request changes nothing: skip the write.
            if obj["status"] != status or progress["line"] != line:
                self.store.save_batch(obj, progress)
            return busy

    def _validate(self, obj: dict[str, Any], progress: dict[str, Any], now: float) -> None:
        path = self.store.file_path(obj["input_file_id"])
        if not path.exists():
            errors = [batch_error("invalid_file", "The input file no longer exists.")]
        else:
            outcome = validate_input_file(path, obj["endpoint"])
            errors = outcome.errors
            if not errors:
                errors = self._token_limit_errors(outcome.model, outcome.input_tokens)
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

    def _work_paths(self, batch_id: str) -> tuple[Path, Path]:
        folder = self.store.work_dir / batch_id
        folder.mkdir(exist_ok=True)
        return folder / "output.jsonl", folder / "errors.jsonl"

    def _resume(self, batch_id: str, progress: dict[str, Any]) -> tuple[Path, Path]:
        """The work files, cut back to the last checkpoint the first time this process sees them."""
        output_path, error_path = self._work_paths(batch_id)
        if batch_id not in self._resumed:
            for path, size in (
                (output_path, progress["output_bytes"]),
                (error_path, progress["error_bytes"]),
            ):
                with path.open("ab") as handle:
                    handle.truncate(size)
            self._resumed.add(batch_id)
        return output_path, error_path

    def _allowed_lines(self, batch_id: str, progress: dict[str, Any]) -> int:
        """How many requests simulated time allows to be done by now."""
        seconds = self.settings.seconds_per_request
        if seconds <= 0:
            return progress["total"]
        started, paced_seconds, base = self._pace.get(batch_id, (0.0, -1.0, 0))
        if paced_seconds != seconds:
            started, paced_seconds, base = time.monotonic(), seconds, progress["line"]
            self._pace[batch_id] = (started, paced_seconds, base)
        return min(progress["total"], base + int((time.monotonic() - started) / seconds))

    def _next_look(self, batch_id: str, progress: dict[str, Any], now: float) -> float:
        """When a paced batch may answer its next request or reaches its deadline (monotonic)."""
        due = time.monotonic() + progress["deadline"] - now
        pace = self._pace.get(batch_id)
        if pace is not None and pace[1] > 0:
            started, seconds, base = pace
            due = min(due, started + (progress["line"] + 1 - base) * seconds)
        return due

    def _run_requests(self, obj: dict[str, Any], progress: dict[str, Any], now: float) -> bool:
        if now >= progress["deadline"]:
            self._write_unfinished(obj, progress, "batch_expired")
            self._finish(obj, progress, "expired", now)
            return False
        target = min(self._allowed_lines(obj["id"], progress), progress["line"] + LINES_PER_STEP)
        if target > progress["line"]:
            self._answer_lines(obj, progress, target - progress["line"], int(now))
        if progress["line"] >= progress["total"]:
            obj.update(status="finalizing", finalizing_at=int(now))
            progress["finalizing_since"] = now
            return True
        return target < self._allowed_lines(obj["id"], progress)

    def _answer_lines(
        self, obj: dict[str, Any], progress: dict[str, Any], count: int, created: int
    ) -> None:
        output_path, error_path = self._resume(obj["id"], progress)
        fail_rate, timeout_rate = self.settings.fail_rate, self.settings.timeout_rate
        input_digest = progress.get("input_digest", "")
        outputs: list[tuple[str, bytes]] = []
        errors: list[tuple[str, bytes]] = []
        usage = obj["usage"]
        with self.store.file_path(obj["input_file_id"]).open("rb") as source:
            source.seek(progress["offset"])
            for _ in range(count):
                request = json.loads(source.readline())
                custom_id = request["custom_id"]
                if times_out_by_rate(custom_id, timeout_rate, input_digest):
                    status_code, body = 0, {}
                    line: dict[str, Any] = {
                        "id": ids.batch_request_id(),
                        "custom_id": custom_id,
                        "response": None,
                        "error": {"code": "request_timeout", "message": TIMEOUT_MESSAGE},
                    }
                else:
                    failed = fails_by_rate(custom_id, fail_rate, input_digest)
                    status_code, body = self._answer(obj["endpoint"], request, failed, created)
                    line = {
                        "id": ids.batch_request_id(),
                        "custom_id": custom_id,
                        "response": {
                            "status_code": status_code,
                            "request_id": ids.request_id(),
                            "body": body,
                        },
                        "error": None,
                    }
                encoded = (json.dumps(line, ensure_ascii=False) + "\n").encode(
                    "utf-8", "surrogatepass"
                )
                if status_code == 200:
                    outputs.append((custom_id, encoded))
                    _add_usage(usage, body.get("usage") or {})
                else:
                    errors.append((custom_id, encoded))
            progress["offset"] = source.tell()
        progress["line"] += count
        progress["output_bytes"] += _append_lines(output_path, outputs)
        progress["error_bytes"] += _append_lines(error_path, errors)
        obj["request_counts"]["completed"] += len(outputs)
        obj["request_counts"]["failed"] += len(errors)

    @staticmethod
    def _answer(
        endpoint: str, request: dict[str, Any], failed: bool, created: int
    ) -> tuple[int, dict[str, Any]]:
        if failed:
            return 500, error_envelope(SERVER_ERROR_MESSAGE, type="server_error")
        try:
            return 200, respond(endpoint, request["body"], created=created)
        except RequestRejected as rejected:
            return rejected.status_code, rejected.envelope()

    def _write_unfinished(self, obj: dict[str, Any], progress: dict[str, Any], code: str) -> None:
        """Give every request not yet answered an error line with `code`."""
        if progress["total"] == 0:
            return
        _, error_path = self._resume(obj["id"], progress)
        message = UNFINISHED_MESSAGES[code]
        with (
            self.store.file_path(obj["input_file_id"]).open("rb") as source,
            error_path.open("ab") as errors,
        ):
            source.seek(progress["offset"])
            for raw in source:
                line = {
                    "id": ids.batch_request_id(),
                    "custom_id": json.loads(raw)["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": message},
                }
                errors.write(
                    (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
                )
            progress["offset"] = source.tell()
            progress["error_bytes"] = errors.tell()
        progress["line"] = progress["total"]

    def _finish(
        self, obj: dict[str, Any], progress: dict[str, Any], status: str, now: float
    ) -> None:
        """Publish the output and error files and stamp the terminal status."""
        if progress["total"] > 0:
            output_path, error_path = self._resume(obj["id"], progress)
            expiry = progress.get("output_expires_after") or DEFAULT_OUTPUT_EXPIRY_SECONDS
            obj["output_file_id"] = self._publish(obj["id"], "output", output_path, expiry, now)
            obj["error_file_id"] = self._publish(obj["id"], "error", error_path, expiry, now)
        obj["status"] = status
        obj[f"{status}_at"] = int(now)
        self._pace.pop(obj["id"], None)
        self._resumed.discard(obj["id"])
        shutil.rmtree(self.store.work_dir / obj["id"], ignore_errors=True)

    def _publish(
        self, batch_id: str, kind: str, work_path: Path, expiry_seconds: int, now: float
    ) -> str | None:
        file_id = derived_file_id(batch_id, kind)
        if self.store.get_file(file_id) is not None:
            return file_id
        target = self.store.file_path(file_id)
        source = work_path if work_path.exists() else target
        if not source.exists() or source.stat().st_size == 0:
            return None
        created = int(now)
        self.store.add_file(
            {
                "id": file_id,
                "object": "file",
                "bytes": source.stat().st_size,
                "created_at": created,
                "expires_at": created + expiry_seconds,
                "filename": f"{batch_id}_{kind}.jsonl",
                "purpose": "batch_output",
                "status": "processed",
                "status_details": None,
            },
            source,
        )
        return file_id

    def _reap_expired_files(self) -> None:
        if time.monotonic() < self._next_reap:
            return
        self._next_reap = time.monotonic() + 1.0
        for file_id in self.store.expired_file_ids(self.settings.now()):
            self.store.delete_file(file_id)


def _add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    input_tokens = usage.get("input_tokens", usage.get("prompt_tokens", 0)) or 0
    output_tokens = usage.get("output_tokens", usage.get("completion_tokens", 0)) or 0
    total["input_tokens"] += input_tokens
    total["output_tokens"] += output_tokens
    total["total_tokens"] += input_tokens + output_tokens


def _append_lines(path: Path, lines: list[tuple[str, bytes]]) -> int:
    if not lines:
        return 0
    lines.sort(key=_output_order)
    data = b"".join(encoded for _, encoded in lines)
    with path.open("ab") as handle:
        handle.write(data)
    return len(data)
