"""Batches waiting at a slow pace cost the engine nothing, yet react at once to what changes."""

from __future__ import annotations

import time
from pathlib import Path

from openai import OpenAI

from batch_assets.local_api.engine import BatchEngine
from batch_assets.local_api.settings import Simulation
from batch_assets.local_api.store import Store
from tests.local_api.helpers import add_validating_batch, chat_request, submit, wait_until_done
from tests.local_api_server import LocalBatchAPI, wait_for

SLOW = 1000.0


def _in_progress(client: OpenAI, batch_id: str) -> None:
    wait_for(lambda: client.batches.retrieve(batch_id).status == "in_progress")


def test_a_waiting_batch_is_not_rewritten_and_is_due_when_its_next_request_is(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path)
    engine = BatchEngine(store, Simulation(seconds_per_request=SLOW))
    add_validating_batch(store, tmp_path, "batch_waiting", [chat_request("a"), chat_request("b")])
    saves: list[str] = []
    save = store.save_batch
    store.save_batch = lambda obj, progress: (saves.append(obj["status"]), save(obj, progress))  # type: ignore[method-assign]

    engine._advance("batch_waiting")
    engine._advance("batch_waiting")
    engine._advance("batch_waiting")

    assert saves == ["in_progress"]
    due, settings = engine._due["batch_waiting"]
    assert settings is engine.settings
    assert time.monotonic() + SLOW * 0.9 < due <= time.monotonic() + SLOW
    store.close()


def test_a_slow_batch_speeds_up_when_the_pace_changes(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(seconds_per_request=SLOW)
    batch = submit(client, [chat_request("a"), chat_request("b")])
    _in_progress(client, batch.id)

    local_api.configure(seconds_per_request=0.0)

    assert wait_until_done(client, batch.id, timeout=5).status == "completed"


def test_a_slow_batch_expires_when_the_clock_moves(
    local_api: LocalBatchAPI, client: OpenAI
) -> None:
    local_api.configure(seconds_per_request=SLOW)
    batch = submit(client, [chat_request("a")])
    _in_progress(client, batch.id)

    local_api.configure(clock_offset_seconds=86401)

    done = wait_until_done(client, batch.id, timeout=5)
    assert done.status == "expired"
    assert done.request_counts.completed == 0


def test_a_slow_batch_is_cancelled_at_once(local_api: LocalBatchAPI, client: OpenAI) -> None:
    local_api.configure(seconds_per_request=SLOW)
    batch = submit(client, [chat_request("a")])
    _in_progress(client, batch.id)

    client.batches.cancel(batch.id)

    assert wait_until_done(client, batch.id, timeout=5).status == "cancelled"
