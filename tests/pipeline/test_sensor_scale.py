"""The sensor sees every submission in one tick, in a few list calls, and skips downloaded ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from openai import OpenAI

from batch_assets.pipeline import event_log
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.keys import RUN_KEY_TAG, submission_run_key
from batch_assets.pipeline.ledger import AttemptRecord
from batch_assets.pipeline.sources import IteratorSource
from tests.local_api.helpers import chat_request, upload
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import Harness, make_defs, record_attempt, submitted


def _no_requests() -> Iterator[dict[str, Any]]:
    yield from ()


def _defs(api: LocalBatchAPI, tmp_path: Path) -> dg.Definitions:
    return make_defs(
        dg.Definitions.merge(
            build_batch_pipeline(
                "alpha", IteratorSource(_no_requests), storage_dir=tmp_path / "gen"
            ),
            build_batch_pipeline(
                "beta", IteratorSource(_no_requests), storage_dir=tmp_path / "gen"
            ),
        ),
        api,
    )


def _in_flight(api: LocalBatchAPI, count: int) -> list[str]:
    """`count` batches that stay in progress for good."""
    api.configure(seconds_per_request=100_000.0)
    client: OpenAI = api.client()
    file_id = upload(client, [chat_request("only")]).id
    ids = [
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(count)
    ]
    wait_for(lambda: all(b.status == "in_progress" for b in client.batches.list(limit=100)))
    return ids


def _submitted(instance: dg.DagsterInstance, pipeline: str, batch_ids: list[str]) -> None:
    record_attempt(instance, f"{pipeline}_batch", AttemptRecord(1, submitted(*batch_ids)))


def _watched(harness: Harness) -> dict[str, set[str]]:
    pending = json.loads(harness.cursor or "{}")["pending"]
    watched: dict[str, set[str]] = {}
    for entry in pending.values():
        watched.setdefault(entry["pipeline"], set()).update(entry["batch_ids"])
    return watched


def test_one_tick_watches_every_submission_with_list_pages(
    api: LocalBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read the event log 100 records a page: the 130 submissions span two pages.
    monkeypatch.setattr(event_log, "RECORDS_PER_PAGE", 100)
    many = 130
    ids = _in_flight(api, many + 1)
    with dg.instance_for_test() as instance:
        for batch_id in ids[:many]:
            _submitted(instance, "alpha", [batch_id])
        _submitted(instance, "beta", [ids[many]])
        harness = Harness(_defs(api, tmp_path), instance)
        api.admin("DELETE", "stats")

        result = harness.tick()

        assert _watched(harness) == {"alpha": set(ids[:many]), "beta": {ids[many]}}
        assert api.admin("GET", "stats")["calls"] == {"GET /v1/batches": 2}
        assert not result.run_requests
        assert len(result.asset_events or []) == many + 1

        later = ids[:2]
        _submitted(instance, "beta", later)
        harness.tick()

        assert _watched(harness)["beta"] == {ids[many], *later}


def test_a_lost_cursor_skips_submissions_whose_download_run_exists(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    ids = _in_flight(api, 2)
    with dg.instance_for_test() as instance:
        _submitted(instance, "alpha", [ids[0]])
        _submitted(instance, "alpha", [ids[1]])

        @dg.op
        def noop() -> None:
            """Stands in for the download run the daemon launched."""

        @dg.job
        def download_stand_in() -> None:
            """A run tagged with the first submission's run key, as the daemon tags it."""
            noop()

        download_stand_in.execute_in_process(
            instance=instance, tags={RUN_KEY_TAG: submission_run_key([ids[0]])}
        )
        harness = Harness(_defs(api, tmp_path), instance)

        harness.tick()

        assert _watched(harness) == {"alpha": {ids[1]}}
