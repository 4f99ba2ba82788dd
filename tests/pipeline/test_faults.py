"""The pipeline survives a restarted Batch API, a failing sensor tick and a failed download run."""

from __future__ import annotations

import signal
from pathlib import Path

import dagster as dg
import openai
import polars as pl
import pytest

from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sensor import batch_completion_sensor
from batch_assets.pipeline.sources import JsonlFileSource
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import TEST_API_KEY, Harness, write_chat_requests

IDS = [f"f{i:03d}" for i in range(80)]


def _harness(api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance) -> Harness:
    source = write_chat_requests(tmp_path / "requests.jsonl", IDS)
    defs = dg.Definitions.merge(
        build_batch_pipeline("faults", JsonlFileSource(source), storage_dir=tmp_path / "gen"),
        dg.Definitions(
            sensors=[batch_completion_sensor],
            resources={
                "openai_batch": OpenAIBatchResource(
                    api_key=TEST_API_KEY, base_url=api.base_url, max_retries=0
                )
            },
        ),
    )
    return Harness(defs, instance)


def _output_ids(result: dg.ExecuteInProcessResult) -> list[str]:
    table = result.output_for_node("faults_download", "faults_output").output_table
    return sorted(pl.read_parquet(table)["custom_id"].to_list())


def test_batch_api_restarted_while_the_batch_runs(start_local_api, tmp_path: Path) -> None:
    api = start_local_api("--seconds-per-request", "0.02")
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        harness.materialize(["faults_requests", "faults_batch"])
        harness.tick()
        api.stop(signal.SIGKILL)
        api.restart()

        result = harness.run_requested(harness.tick_until_run_requested())

        assert result.success
        assert _output_ids(result) == IDS


def test_a_tick_that_raises_loses_nothing(start_local_api, tmp_path: Path) -> None:
    api = start_local_api()
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        harness.materialize(["faults_requests", "faults_batch"])
        api.configure(http_error_rate=1.0, retry_after_seconds=0)
        with pytest.raises((openai.RateLimitError, openai.InternalServerError)):
            harness.tick()
        api.configure(http_error_rate=0.0)

        result = harness.run_requested(harness.tick_until_run_requested())

        assert result.success
        assert _output_ids(result) == IDS


def test_a_failed_download_run_succeeds_when_executed_again(
    start_local_api, tmp_path: Path
) -> None:
    api = start_local_api()
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        harness.materialize(["faults_requests", "faults_batch"])
        request = harness.tick_until_run_requested()
        api.configure(http_error_rate=1.0, retry_after_seconds=0)

        failed = harness.run_requested(request)
        assert not failed.success
        api.configure(http_error_rate=0.0)
        again = harness.run_requested(request)

        assert again.success
        assert _output_ids(again) == IDS
        assert harness.tick().run_requests == []
