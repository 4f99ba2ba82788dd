"""While a large batch runs unpaced, the helper process gets its share of the batch's next step
before the engine answers its own: each request is still answered once, in checkpoint order, and
a share handed over under other settings, or for a batch that ended, is dropped. The share is
sized from each side's measured speed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_assets.local_api.engine import (
    HELPER_BIAS_STEP,
    HELPER_MIN_BATCH_LINES,
    HELPER_SHARE_RANGE,
    BatchEngine,
    _HelperShare,
)
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.store import Store
from tests.local_api.helpers import add_validating_batch, chat_request

BATCH = "batch_ahead"
COUNT = HELPER_MIN_BATCH_LINES + 2500


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[BatchEngine]:
    """An engine on a fresh store with a warm helper and one large batch validated."""
    store = Store(tmp_path)
    add_validating_batch(
        store, tmp_path, BATCH, [chat_request(f"r{row}", f"Row {row}?") for row in range(COUNT)]
    )
    started = BatchEngine(store, Simulation())
    deadline = time.monotonic() + 60
    while not started._helper.ready():
        assert time.monotonic() < deadline, "the helper did not warm up"
        time.sleep(0.01)
    started._advance(BATCH)  # validated: in_progress
    yield started
    started._helper.close()
    store.close()


def _progress(engine: BatchEngine) -> tuple[dict, dict]:
    loaded = engine.store.get_batch_with_progress(BATCH)
    assert loaded is not None
    return loaded


def _work_lines(engine: BatchEngine, kind: str) -> list[dict]:
    path = engine.store.work_dir / BATCH / ("output.jsonl" if kind == "output" else "errors.jsonl")
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_the_next_share_is_handed_over_and_each_request_is_answered_once(
    engine: BatchEngine,
) -> None:
    engine._advance(BATCH)
    ahead = engine._ahead[BATCH]
    assert ahead.line == _progress(engine)[1]["line"] > 0  # the next step's first lines
    while _progress(engine)[0]["status"] == "in_progress":
        engine._advance(BATCH)
    assert _progress(engine)[0]["request_counts"]["completed"] == COUNT
    answered = [line["custom_id"] for line in _work_lines(engine, "output")]
    assert sorted(answered) == sorted(f"r{row}" for row in range(COUNT))
    assert BATCH not in engine._ahead


def test_a_share_handed_over_under_other_settings_is_answered_again(
    engine: BatchEngine,
) -> None:
    engine._advance(BATCH)
    ahead = engine._ahead[BATCH]
    done_before = _progress(engine)[1]["line"]
    engine.settings = Simulation(fail_rate=1.0)
    engine._advance(BATCH)
    failed = _progress(engine)[0]["request_counts"]["failed"]
    assert failed == _progress(engine)[1]["line"] - done_before > len(ahead.raws)
    assert {line["response"]["status_code"] for line in _work_lines(engine, "error")} == {500}


def test_a_share_of_a_batch_that_ends_is_dropped(engine: BatchEngine) -> None:
    engine._advance(BATCH)
    assert BATCH in engine._ahead
    engine.cancel(BATCH)
    while _progress(engine)[0]["status"] == "cancelling":
        engine._advance(BATCH)
    assert _progress(engine)[0]["status"] == "cancelled"
    assert BATCH not in engine._ahead
    still = engine._helper.submit(str, 5)  # the dropped reply does not answer a later call
    assert still is not None and still.result(30) == "5"
    assert engine._helper._received == {}  # the dropped reply was not kept either


def test_the_share_has_both_sides_done_together_and_leans_to_who_finished_first() -> None:
    share = _HelperShare()
    assert share.fraction() == 0.5  # nothing measured yet
    # This thread answers a line in 10 us, the helper in 30 us: a quarter goes to the helper.
    share.observe((0.010, 1000), (0.030, 1000), done_first=True)
    assert share.fraction() == pytest.approx(0.25 + HELPER_BIAS_STEP)
    for _ in range(3):  # the helper keeps being waited for: its share shrinks
        share.observe((0.010, 1000), (0.030, 1000), done_first=False)
    assert share.fraction() == pytest.approx(0.25 - 2 * HELPER_BIAS_STEP)
    for _ in range(200):  # a far faster helper: most of each step, within the range
        share.observe((0.030, 1000), (0.001, 1000), done_first=True)
    assert share.fraction() == HELPER_SHARE_RANGE[1]
