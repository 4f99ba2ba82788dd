"""A submission killed between upload and recording its batch, then run again, submits once."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import build_harness, calls
from tests.pipeline.killed_runs import kill_when, start_run

NAME = "once"
IDS = [f"s{i:03d}" for i in range(20)]


def main(base_url: str, tmp_path: str) -> None:
    """Materialize the submission in this process: what the killed run executes."""
    build_harness(base_url, Path(tmp_path), name=NAME, custom_ids=IDS).submit(NAME)


def test_a_run_killed_after_upload_reuses_the_upload(api: LocalBatchAPI, tmp_path: Path) -> None:
    client = api.client()
    api.configure(create_delay_seconds=600)
    run = start_run(__name__, api.base_url, str(tmp_path), log=tmp_path / "run.log")
    kill_when(run, lambda: calls(api, "POST /v1/batches") >= 1, tmp_path / "run.log")
    orphans = client.files.list(purpose="batch").data
    assert len(orphans) == 1
    assert wait_for(lambda: client.batches.list().data == [], timeout=5)

    api.configure(create_delay_seconds=0)
    api.admin("DELETE", "stats")
    harness = build_harness(api, tmp_path, name=NAME, custom_ids=IDS)
    result = harness.submit(NAME)

    assert result.success
    assert calls(api, "POST /v1/files") == 0
    assert calls(api, "POST /v1/batches") == 1
    batches = client.batches.list().data
    assert [batch.input_file_id for batch in batches] == [orphans[0].id]
    metadata = harness.latest_metadata("once_batch")
    assert metadata["batch_ids"] == [batches[0].id]
    assert metadata["reused_uploads"] == 1


def test_a_run_killed_after_create_reuses_the_batch(api: LocalBatchAPI, tmp_path: Path) -> None:
    client = api.client()
    api.configure(create_reply_delay_seconds=600)
    run = start_run(__name__, api.base_url, str(tmp_path), log=tmp_path / "run.log")
    kill_when(run, lambda: client.batches.list().data, tmp_path / "run.log")
    [created] = client.batches.list().data
    harness = build_harness(api, tmp_path, name=NAME, custom_ids=IDS)
    assert harness.instance.get_latest_materialization_event(dg.AssetKey("once_batch")) is None

    api.configure(create_reply_delay_seconds=0)
    api.admin("DELETE", "stats")
    result = harness.submit(NAME)

    assert result.success
    assert calls(api, "POST /v1/files") == 0
    assert calls(api, "POST /v1/batches") == 0
    assert [batch.id for batch in client.batches.list().data] == [created.id]
    metadata = harness.latest_metadata("once_batch")
    assert metadata["batch_ids"] == [created.id]
    assert metadata["reused_batches"] == 1
