"""A submission killed between upload and recording its batch, then run again, submits once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import JsonlFileSource
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import Harness, make_defs, write_chat_requests

ROOT = Path(__file__).resolve().parents[2]
IDS = [f"s{i:03d}" for i in range(20)]
KEYS = ["once_requests", "once_batch"]


def _harness(base_url: str, tmp_path: Path) -> Harness:
    source = write_chat_requests(tmp_path / "requests.jsonl", IDS)
    server = LocalBatchAPI(tmp_path / "unused")
    server.base_url = base_url
    pipeline = build_batch_pipeline("once", JsonlFileSource(source), storage_dir=tmp_path / "gen")
    (tmp_path / "dagster").mkdir(exist_ok=True)
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    return Harness(make_defs(pipeline, server), instance)


def main(base_url: str, tmp_path: str) -> None:
    """Materialize the submission in this process: what the killed run executes."""
    _harness(base_url, Path(tmp_path)).materialize(KEYS)


def _start_run(api: LocalBatchAPI, tmp_path: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from tests.pipeline.test_submit_once import main; main(*sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, api.base_url, str(tmp_path)],
        cwd=ROOT,
        stdout=(tmp_path / "run.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def _kill_when(
    process: subprocess.Popen[bytes], ready: Callable[[], object], tmp_path: Path
) -> None:
    try:
        wait_for(lambda: process.poll() is not None or ready(), timeout=120, interval=0.05)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "run.log").read_text()


def _calls(api: LocalBatchAPI) -> dict[str, int]:
    return api.admin("GET", "stats")["calls"]


def test_a_run_killed_after_upload_reuses_the_upload(api: LocalBatchAPI, tmp_path: Path) -> None:
    client = api.client()
    api.configure(create_delay_seconds=600)
    run = _start_run(api, tmp_path)
    _kill_when(run, lambda: _calls(api).get("POST /v1/batches", 0) >= 1, tmp_path)
    orphans = client.files.list(purpose="batch").data
    assert len(orphans) == 1
    assert wait_for(lambda: client.batches.list().data == [], timeout=5)

    api.configure(create_delay_seconds=0)
    api.admin("DELETE", "stats")
    harness = _harness(api.base_url, tmp_path)
    result = harness.materialize(KEYS)

    assert result.success
    assert _calls(api).get("POST /v1/files", 0) == 0
    assert _calls(api)["POST /v1/batches"] == 1
    batches = client.batches.list().data
    assert [batch.input_file_id for batch in batches] == [orphans[0].id]
    metadata = harness.latest_metadata("once_batch")
    assert metadata["batch_ids"] == [batches[0].id]
    assert metadata["reused_uploads"] == 1


def test_a_run_killed_after_create_reuses_the_batch(api: LocalBatchAPI, tmp_path: Path) -> None:
    client = api.client()
    api.configure(create_reply_delay_seconds=600)
    run = _start_run(api, tmp_path)
    _kill_when(run, lambda: client.batches.list().data, tmp_path)
    [created] = client.batches.list().data
    harness = _harness(api.base_url, tmp_path)
    assert harness.instance.get_latest_materialization_event(dg.AssetKey("once_batch")) is None

    api.configure(create_reply_delay_seconds=0)
    api.admin("DELETE", "stats")
    result = harness.materialize(KEYS)

    assert result.success
    assert _calls(api).get("POST /v1/files", 0) == 0
    assert _calls(api).get("POST /v1/batches", 0) == 0
    assert [batch.id for batch in client.batches.list().data] == [created.id]
    metadata = harness.latest_metadata("once_batch")
    assert metadata["batch_ids"] == [created.id]
    assert metadata["reused_batches"] == 1
