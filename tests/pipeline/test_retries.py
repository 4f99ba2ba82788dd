"""Requests that fail for a retryable reason go into follow-up batches; the rest are final."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from openai import OpenAI

from batch_assets.core.limits import BatchLimits
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import JsonlFileSource
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import TEST_API_KEY, Harness, make_defs

IDS = [f"q{i:03d}" for i in range(60)]


def _harness(
    api: LocalBatchAPI,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    *,
    max_attempts: int = 3,
    broken: set[str] = frozenset(),
    shard_size: int | None = None,
) -> Harness:
    source = tmp_path / "requests.jsonl"
    lines = []
    for custom_id in IDS:
        messages = [] if custom_id in broken else [{"role": "user", "content": custom_id}]
        body = {"model": "gpt-4o-mini", "messages": messages}
        lines.append(
            json.dumps(
                {
                    "custom_id": custom_id,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
            )
        )
    source.write_text("\n".join(lines) + "\n")
    pipeline = build_batch_pipeline(
        "retry",
        JsonlFileSource(source),
        storage_dir=tmp_path / "gen",
        max_attempts=max_attempts,
        limits=BatchLimits(max_requests=shard_size) if shard_size else BatchLimits(),
    )
    return Harness(make_defs(pipeline, api), instance)


def _final(result: dg.ExecuteInProcessResult) -> tuple[pl.DataFrame, pl.DataFrame]:
    batch_result = result.output_for_node("retry_download", "retry_output")
    return pl.read_parquet(batch_result.output_table), result.output_for_node(
        "retry_download", "retry_errors"
    )


def _batches_created(api: LocalBatchAPI) -> int:
    return api.admin("GET", "stats")["calls"]["POST /v1/batches"]


def _downloads(api: LocalBatchAPI) -> int:
    return api.admin("GET", "stats")["calls"].get("GET /v1/files/{id}/content", 0)


def test_a_cancel_nobody_asked_for_is_retried_until_every_request_is_answered(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    api.configure(seconds_per_request=0.05)
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        batch_id, client = harness.submit_and_wait_for_progress(api, "retry")
        client.batches.cancel(batch_id)
        api.configure(seconds_per_request=0.0)

        result = harness.run_until_downloaded("retry_output")

        output, errors = _final(result)
        assert sorted(output["custom_id"].to_list()) == IDS
        assert errors.height == 0
        assert set(output["attempts"].to_list()) == {1, 2}
        assert _batches_created(api) == 2
        batch_result = result.output_for_node("retry_download", "retry_output")
        downloaded = {*batch_result.output_files, *batch_result.error_files}
        # Each result file is downloaded once: attempt 2's run reads attempt 1's copies.
        assert len(downloaded) == 3
        assert _downloads(api) == 3
        follow_up = harness.latest_metadata("retry_batch")
        assert follow_up["attempt"] == 2
        assert follow_up["retried_requests"] == output.filter(pl.col("attempts") == 2).height
        assert harness.latest_metadata("retry_output")["attempts"] == 2


def test_retries_stop_at_max_attempts_and_keep_each_request_once(
    tmp_path: Path, start_local_api
) -> None:
    api = start_local_api("--seconds-per-request", "0.05", "--window-seconds", "1")
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance, max_attempts=2)
        harness.materialize(["retry_requests", "retry_batch"])

        result = harness.run_until_downloaded("retry_output")

        output, errors = _final(result)
        assert sorted(output["custom_id"].to_list() + errors["custom_id"].to_list()) == IDS
        assert errors.height > 0
        assert set(errors["error_code"].to_list()) == {"batch_expired"}
        assert set(errors["attempts"].to_list()) == {2}
        assert _batches_created(api) == 2


def test_errors_of_the_request_itself_are_not_retried(api: LocalBatchAPI, tmp_path: Path) -> None:
    broken = {"q007", "q042"}
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance, broken=broken)
        harness.materialize(["retry_requests", "retry_batch"])

        result = harness.run_until_downloaded("retry_output")

        output, errors = _final(result)
        assert set(errors["custom_id"].to_list()) == broken
        assert errors["status_code"].to_list() == [400, 400]
        assert errors["attempts"].to_list() == [1, 1]
        assert output.height == 58
        assert _batches_created(api) == 1


def test_token_limit_waits_for_capacity_and_resubmits(
    api: LocalBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_ASSETS_TOKEN_LIMIT_BACKOFF_SECONDS", "0.5")
    api.configure(enqueued_token_limit=300, seconds_per_request=0.05)
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance, max_attempts=1, shard_size=30)
        harness.materialize(["retry_requests", "retry_batch"])
        client = OpenAI(base_url=api.base_url, api_key=TEST_API_KEY)
        batches = [
            client.batches.retrieve(i) for i in harness.latest_metadata("retry_batch")["batch_ids"]
        ]
        wait_for(lambda: any(client.batches.retrieve(b.id).status == "failed" for b in batches))

        result = harness.run_until_downloaded("retry_output")

        output, errors = _final(result)
        assert errors.height == 0
        assert sorted(output["custom_id"].to_list()) == IDS
        assert sorted(set(output["attempts"].to_list())) == [1, 2]
        assert harness.latest_metadata("retry_batch")["token_limit_waits"] == 1
