"""What a submission needs next, decided from its attempts' batches alone: no I/O.

The rules (README, "Retries"):
- a batch of the latest attempt still running: wait for it;
- a batch of the latest attempt failed validation at the API (not the enqueued-token limit): the
  submission is rejected, nothing is resubmitted;
- a batch failed only on the enqueued-token limit: wait for capacity, `base_backoff` seconds after
  it failed, doubling with each wait in a row up to `MAX_BACKOFF_SECONDS`; then resubmit its
  requests, however many attempts there were (a capacity wait is not an attempt);
- otherwise read the results; requests that failed for a retryable reason are resubmitted while
  fewer than `max_attempts` attempts were counted; else the submission is done.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence, Set
from dataclasses import dataclass

from openai.types import Batch

from batch_assets.core.batch_client import TERMINAL_STATUSES
from batch_assets.core.retry_policy import hit_token_limit

MAX_BACKOFF_SECONDS = 900.0
CAPACITY_REASON = "the enqueued-token limit was reached"
RETRYABLE_REASON = "they failed for a retryable reason"


@dataclass(frozen=True)
class AttemptState:
    """One attempt's batches as the Batch API reports them now, and the capacity waits before it."""

    number: int
    batches: tuple[Batch, ...]
    token_limit_waits: int = 0


@dataclass(frozen=True)
class StillRunning:
    """Some batches of the latest attempt have not ended."""

    statuses: dict[str, int]
    batch_count: int


@dataclass(frozen=True)
class Rejected:
    """The Batch API refused some batches of the latest attempt at validation: final."""

    batches: tuple[Batch, ...]


@dataclass(frozen=True)
class WaitForCapacity:
    """A batch hit the enqueued-token limit: resubmit at `ready_at` (epoch seconds), not before."""

    ready_at: float
    waits: int


@dataclass(frozen=True)
class ReadResults:
    """Every batch ended: the result files say which requests to resubmit, if any."""


@dataclass(frozen=True)
class Resubmit:
    """Send these custom_ids again as attempt `attempt`, for `reason`."""

    custom_ids: frozenset[str]
    reason: str
    attempt: int
    token_limit_waits: int


@dataclass(frozen=True)
class Done:
    """Nothing left to wait for or resubmit: the results are final."""


Decision = StillRunning | Rejected | WaitForCapacity | ReadResults | Resubmit | Done


def token_limit_backoff_seconds(waits: int, base_backoff: float) -> float:
    """How long to wait before resubmitting after `waits` token-limit failures in a row."""
    return float(min(base_backoff * 2 ** max(waits - 1, 0), MAX_BACKOFF_SECONDS))


def counted_attempts(attempts: Sequence[AttemptState]) -> int:
    """Attempts that count towards `max_attempts`: those not stopped by the token limit."""
    return sum(1 for attempt in attempts if not any(map(hit_token_limit, attempt.batches)))


def await_batches(
    latest: AttemptState, *, now: float, base_backoff: float
) -> StillRunning | Rejected | WaitForCapacity | ReadResults:
    """What the latest attempt's batches allow now, before any result file is read."""
    running = [batch for batch in latest.batches if batch.status not in TERMINAL_STATUSES]
    if running:
        return StillRunning(dict(Counter(batch.status for batch in running)), len(latest.batches))
    failed = [batch for batch in latest.batches if batch.status == "failed"]
    rejected = tuple(batch for batch in failed if not hit_token_limit(batch))
    if rejected:
        return Rejected(rejected)
    if failed:
        waits = latest.token_limit_waits + 1
        ready_at: float = max(batch.failed_at or 0 for batch in failed)
        ready_at += token_limit_backoff_seconds(waits, base_backoff)
        if now < ready_at:
            return WaitForCapacity(ready_at, waits)
    return ReadResults()


def decide(
    attempts: Sequence[AttemptState],
    retryable_ids: Set[str] | None,
    *,
    max_attempts: int,
    now: float,
    base_backoff: float,
) -> Decision:
    """The next step for a submission whose attempts are `attempts`, oldest first.

    `retryable_ids` are the requests whose last answer failed for a retryable reason, or None
    while the results are unread.
    """
    latest = attempts[-1]
    waiting = await_batches(latest, now=now, base_backoff=base_backoff)
    if not isinstance(waiting, ReadResults) or retryable_ids is None:
        return waiting
    capacity = any(map(hit_token_limit, latest.batches))
    if retryable_ids and (capacity or counted_attempts(attempts) < max_attempts):
        return Resubmit(
            frozenset(retryable_ids),
            CAPACITY_REASON if capacity else RETRYABLE_REASON,
            latest.number + 1,
            latest.token_limit_waits + 1 if capacity else 0,
        )
    return Done()
