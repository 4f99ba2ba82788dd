"""`answer_at_most`: a batch answers exactly that many requests, then holds until told otherwise."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import pytest
from openai import OpenAI
from openai.types import Batch

from batch_assets.local_api import engine as engine_module
from batch_assets.local_api.engine import BatchEngine
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.store import Store
from tests.local_api.helpers import (
    add_validating_batch,
    chat_request,
    read_lines,
    submit,
    wait_until_done,
)
from tests.local_api_server import LocalBatchAPI, wait_for

IDS = [f"a{i:02d}" for i in range(10)]
LINES = [chat_request(custom_id) for custom_id in IDS]
PACE = 10.0
HELD_BATCH = "batch_held"


def _completed(client: OpenAI, batch_id: str, count: int) -> Batch:
    """The batch, once exactly `count` of its requests are answered (never more)."""

    def reached() -> Batch | None:
        batch = client.batches.retrieve(batch_id)
        assert batch.request_counts.completed <= count, batch.request_counts
        return batch if batch.request_counts.completed == count else None

    return wait_for(reached)


def _custom_ids(client: OpenAI, file_id: str | None) -> list[str]:
    return sorted(line["custom_id"] for line in read_lines(client, file_id))


def _error_codes(client: OpenAI, file_id: str | None) -> set[str]:
    return {line["error"]["code"] for line in read_lines(client, file_id)}


def test_a_held_batch_answers_exactly_the_limit_and_a_cancel_lists_the_rest(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(answer_at_most=3)
    batch = submit(client, LINES)

    held = _completed(client, batch.id, 3)
    assert held.status == "in_progress"
    assert held.request_counts.failed == 0
    client.batches.cancel(batch.id)

    done = wait_until_done(client, batch.id)
    assert done.status == "cancelled"
    # As OpenAI counts them: the requests never run are neither completed nor failed.
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    # Requests are answered in input order: the first three.
    assert _custom_ids(client, done.output_file_id) == IDS[:3]
    assert _custom_ids(client, done.error_file_id) == IDS[3:]
    assert _error_codes(client, done.error_file_id) == {"batch_cancelled"}


def test_a_held_batch_expires_when_the_clock_moves_past_its_deadline(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(answer_at_most=4)
    batch = submit(client, LINES)
    _completed(client, batch.id, 4)

    local_api.configure(clock_offset_seconds=86401)

    done = wait_until_done(client, batch.id)
    assert done.status == "expired"
    assert (done.request_counts.completed, done.request_counts.failed) == (4, 0)
    assert _custom_ids(client, done.output_file_id) == IDS[:4]
    assert _custom_ids(client, done.error_file_id) == IDS[4:]
    assert _error_codes(client, done.error_file_id) == {"batch_expired"}


def test_raising_then_clearing_the_limit_lets_the_batch_go_on(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(answer_at_most=0)
    batch = submit(client, LINES)
    wait_for(lambda: client.batches.retrieve(batch.id).status == "in_progress")
    assert client.batches.retrieve(batch.id).request_counts.completed == 0

    local_api.configure(answer_at_most=6)
    assert _completed(client, batch.id, 6).status == "in_progress"
    local_api.configure(answer_at_most=None)

    done = wait_until_done(client, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (10, 0)
    assert _custom_ids(client, done.output_file_id) == IDS
    assert done.error_file_id is None


def test_the_limit_counts_per_batch(local_api: LocalBatchAPI, client: OpenAI) -> None:
    local_api.configure(answer_at_most=2)
    first, second = submit(client, LINES), submit(client, LINES[:5])

    _completed(client, first.id, 2)
    _completed(client, second.id, 2)
    local_api.configure(answer_at_most=5)

    assert wait_until_done(client, second.id).request_counts.completed == 5
    assert _completed(client, first.id, 5).status == "in_progress"


@pytest.mark.parametrize("value", [-1, 2.5, "three", [1]])
def test_the_limit_is_a_count_or_none(local_api: LocalBatchAPI, value: object) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        local_api.configure(answer_at_most=value)
    assert caught.value.code == 400
    error = json.loads(caught.value.read())["error"]
    assert error["param"] == "answer_at_most"
    assert local_api.admin()["answer_at_most"] is None
    assert local_api.configure(answer_at_most=0)["answer_at_most"] == 0
    assert local_api.configure(answer_at_most=None)["answer_at_most"] is None


def test_the_flag_sets_the_limit(start_local_api) -> None:
    server = start_local_api("--answer-at-most", "2")
    assert server.admin()["answer_at_most"] == 2
    client = server.client()
    batch = submit(client, LINES[:4])

    assert _completed(client, batch.id, 2).status == "in_progress"
    server.configure(answer_at_most=None)

    assert wait_until_done(client, batch.id).request_counts.completed == 4


# The engine on its own, with a clock the test moves


class _Clock:
    """The engine's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _held_engine(tmp_path: Path, settings: Simulation) -> tuple[BatchEngine, Store]:
    store = Store(tmp_path)
    add_validating_batch(store, tmp_path, HELD_BATCH, LINES[:3])
    return BatchEngine(store, settings), store


def _line(store: Store) -> int:
    loaded = store.get_batch_with_progress(HELD_BATCH)
    assert loaded is not None
    return loaded[1]["line"]


def test_a_held_batch_waits_for_its_deadline_only_and_its_pace_starts_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(engine_module, "time", SimpleNamespace(monotonic=clock.monotonic))
    engine, store = _held_engine(tmp_path, Simulation(seconds_per_request=PACE, answer_at_most=1))
    engine._advance(HELD_BATCH)  # validated: in_progress
    engine._advance(HELD_BATCH)  # the pace starts: nothing due yet
    assert _line(store) == 0
    assert engine._due[HELD_BATCH][0] == 1000.0 + PACE

    clock.now += PACE
    engine._advance(HELD_BATCH)
    assert _line(store) == 1
    # Held: the next look is the deadline, a day away, not the pace's next request.
    assert engine._due[HELD_BATCH][0] > clock.now + 86000

    saves: list[int] = []
    save = store.save_batch
    store.save_batch = lambda obj, progress: (saves.append(progress["line"]), save(obj, progress))  # type: ignore[method-assign]
    clock.now += 100 * PACE
    engine._advance(HELD_BATCH)
    assert _line(store) == 1
    assert saves == []
    assert engine._due[HELD_BATCH][0] > clock.now + 86000

    # Cleared after a long hold: the pace goes on from the held line, with no burst.
    engine.settings = Simulation(seconds_per_request=PACE)
    engine._advance(HELD_BATCH)
    assert _line(store) == 1
    assert engine._due[HELD_BATCH][0] == clock.now + PACE
    clock.now += PACE
    engine._advance(HELD_BATCH)
    assert _line(store) == 2
    store.close()
