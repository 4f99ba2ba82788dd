"""The retry decision against the README's rules, on generated attempts and batch states."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from openai.types import Batch

from batch_assets.core.batch_client import TERMINAL_STATUSES
from batch_assets.core.retry_decision import (
    CAPACITY_REASON,
    MAX_BACKOFF_SECONDS,
    RETRYABLE_REASON,
    AttemptState,
    Done,
    ReadResults,
    Rejected,
    Resubmit,
    StillRunning,
    WaitForCapacity,
    await_batches,
    counted_attempts,
    decide,
    token_limit_backoff_seconds,
)
from tests.core.strategies import property_settings

RUNNING = ("validating", "in_progress", "finalizing", "cancelling")
FAILED_AT = 1_000_000
BASE_BACKOFF = 60.0


def batch(number: int, status: str, error_codes: tuple[str, ...] = ()) -> Batch:
    """A batch as the Batch API reports it, failed with `error_codes` when failed."""
    fields: dict[str, Any] = {
        "id": f"batch_{number}",
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": f"file_{number}",
        "completion_window": "24h",
        "created_at": FAILED_AT - 100,
        "status": status,
    }
    if status == "failed":
        fields["failed_at"] = FAILED_AT
        fields["errors"] = {
            "object": "list",
            "data": [{"code": code, "message": code} for code in error_codes],
        }
    return Batch.model_validate(fields)


statuses = st.sampled_from(sorted(TERMINAL_STATUSES) + list(RUNNING))
error_codes = st.lists(
    st.sampled_from(["token_limit_exceeded", "invalid_json_line", "too_many_requests"]),
    min_size=1,
    max_size=3,
).map(tuple)


@st.composite
def attempt_states(draw: st.DrawFn, number: int) -> AttemptState:
    """One attempt of one to four batches in any states."""
    count = draw(st.integers(1, 4))
    batches = tuple(
        batch(number * 10 + index, status, draw(error_codes) if status == "failed" else ())
        for index, status in enumerate(draw(st.lists(statuses, min_size=count, max_size=count)))
    )
    return AttemptState(number, batches, draw(st.integers(0, 5)))


@st.composite
def histories(draw: st.DrawFn) -> list[AttemptState]:
    """One to five attempts, numbered from 1."""
    return [draw(attempt_states(number)) for number in range(1, draw(st.integers(1, 5)) + 1)]


ids = st.none() | st.frozensets(st.sampled_from("abcdef"), max_size=6)
now = st.integers(FAILED_AT - 10, FAILED_AT + 2 * int(MAX_BACKOFF_SECONDS)).map(float)


def only_token_limit(state: Batch) -> bool:
    errors = state.errors.data if state.errors and state.errors.data else []
    return state.status == "failed" and all(e.code == "token_limit_exceeded" for e in errors)


@property_settings(300)
@given(histories(), ids, st.integers(1, 5), now)
def test_the_decision_follows_the_rules(
    attempts: list[AttemptState], retryable: frozenset[str] | None, max_attempts: int, at: float
) -> None:
    latest = attempts[-1]
    decision = decide(
        attempts, retryable, max_attempts=max_attempts, now=at, base_backoff=BASE_BACKOFF
    )
    running = [b for b in latest.batches if b.status not in TERMINAL_STATUSES]
    failed = [b for b in latest.batches if b.status == "failed"]
    capacity = bool(failed) and all(only_token_limit(b) for b in failed)
    waits = latest.token_limit_waits + 1
    ready_at = FAILED_AT + min(BASE_BACKOFF * 2 ** (waits - 1), MAX_BACKOFF_SECONDS)
    if running:
        counts = {status: sum(b.status == status for b in running) for status in RUNNING}
        expected = {status: count for status, count in counts.items() if count}
        assert decision == StillRunning(expected, len(latest.batches))
    elif failed and not capacity:
        assert isinstance(decision, Rejected)
        assert {b.id for b in decision.batches} == {b.id for b in failed if not only_token_limit(b)}
    elif capacity and at < ready_at:
        assert decision == WaitForCapacity(ready_at, waits)
    elif retryable is None:
        assert decision == ReadResults()
    elif retryable and (capacity or counted_attempts(attempts) < max_attempts):
        assert decision == Resubmit(
            retryable,
            CAPACITY_REASON if capacity else RETRYABLE_REASON,
            latest.number + 1,
            waits if capacity else 0,
        )
    else:
        assert decision == Done()


@property_settings(200)
@given(histories(), st.frozensets(st.sampled_from("abcdef"), min_size=1), st.integers(1, 5))
def test_attempts_stopped_by_the_token_limit_do_not_count(
    attempts: list[AttemptState], retryable: frozenset[str], max_attempts: int
) -> None:
    """Only attempts the token limit did not stop count towards max_attempts."""
    decision = decide(
        attempts, retryable, max_attempts=max_attempts, now=float("inf"), base_backoff=0
    )
    if isinstance(decision, Resubmit) and decision.reason == RETRYABLE_REASON:
        assert counted_attempts(attempts) < max_attempts


@property_settings(100)
@given(histories(), now)
def test_the_sensor_and_the_download_step_agree_before_the_results(
    attempts: list[AttemptState], at: float
) -> None:
    """Without results, `decide` is the sensor's `await_batches` on the latest attempt."""
    assert decide(
        attempts, None, max_attempts=3, now=at, base_backoff=BASE_BACKOFF
    ) == await_batches(attempts[-1], now=at, base_backoff=BASE_BACKOFF)


def test_the_backoff_doubles_and_stops_at_the_maximum() -> None:
    waits = [token_limit_backoff_seconds(n, 60) for n in range(1, 7)]
    assert waits == [60, 120, 240, 480, 900, 900]


def test_a_capacity_wait_resubmits_past_max_attempts() -> None:
    limited = AttemptState(2, (batch(1, "failed", ("token_limit_exceeded",)),), 1)
    first = AttemptState(1, (batch(2, "expired"),))
    decision = decide(
        [first, limited], {"a"}, max_attempts=1, now=FAILED_AT + 120, base_backoff=BASE_BACKOFF
    )
    assert decision == Resubmit(frozenset({"a"}), CAPACITY_REASON, 3, 2)
    early = decide(
        [first, limited], {"a"}, max_attempts=1, now=FAILED_AT + 119, base_backoff=BASE_BACKOFF
    )
    assert early == WaitForCapacity(FAILED_AT + 120, 2)


def test_retryable_failures_stop_at_max_attempts() -> None:
    ended = [AttemptState(n, (batch(n, "expired"),)) for n in (1, 2)]
    assert decide(ended, {"a"}, max_attempts=2, now=0, base_backoff=0) == Done()
    assert decide(ended, {"a"}, max_attempts=3, now=0, base_backoff=0) == Resubmit(
        frozenset({"a"}), RETRYABLE_REASON, 3, 0
    )
    assert decide(ended, set(), max_attempts=3, now=0, base_backoff=0) == Done()
