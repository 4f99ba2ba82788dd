"""How the pipeline ends for each way a batch can end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.core.limits import BatchLimits
from batch_assets.pipeline import event_log
from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import IteratorSource, JsonlFileSource
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import Harness, make_defs, write_chat_requests

IDS = [f"r{i:03d}" for i in range(60)]


def _harness(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance, max_attempts: int = 1
) -> Harness:
    source = write_chat_requests(tmp_path / "requests.jsonl", IDS)
    pipeline = build_batch_pipeline(
        "ends", JsonlFileSource(source), storage_dir=tmp_path / "gen", max_attempts=max_attempts
    )
    return Harness(make_defs(pipeline, api), instance)


def _frames(result: dg.ExecuteInProcessResult) -> tuple[pl.DataFrame, pl.DataFrame]:
    batch_result = result.output_for_node("ends_download", "ends_output")
    return pl.read_parquet(batch_result.output_table), result.output_for_node(
        "ends_download", "ends_errors"
    )


def _every_id_once(output: pl.DataFrame, errors: pl.DataFrame) -> None:
    returned = output["custom_id"].to_list() + errors["custom_id"].to_list()
    assert sorted(returned) == IDS


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_completed_with_every_request_failed(api: LocalBatchAPI, tmp_path: Path) -> None:
    api.configure(fail_rate=1.0)
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        harness.materialize(["ends_requests", "ends_batch"])
        result = harness.run_requested(harness.tick_until_run_requested())

        assert result.success
        output, errors = _frames(result)
        assert output.height == 0
        assert errors.height == 60
        assert errors["status_code"].unique().to_list() == [500]
        assert errors["error_type"].unique().to_list() == ["server_error"]
        _every_id_once(output, errors)
        assert _checks(result) == {
            "every_request_answered_once": True,
            "error_rate_below_threshold": False,
        }


def test_failed_validation_fails_the_run_with_the_api_errors(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    # A client limit set above the API's (50,000 embedding inputs) passes our checks and fails
    # the API's validation: the download run must fail and show the API's errors.
    def requests() -> Iterator[dict]:
        for i in range(5):
            yield {
                "custom_id": f"e{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "text-embedding-3-small", "input": ["x"] * 10_001},
            }

    pipeline = build_batch_pipeline(
        "ends",
        IteratorSource(requests),
        endpoint="/v1/embeddings",
        limits=BatchLimits(max_embedding_inputs=60_000),
        storage_dir=tmp_path / "gen",
    )
    with dg.instance_for_test() as instance:
        harness = Harness(make_defs(pipeline, api), instance)
        harness.materialize(["ends_requests", "ends_batch"])
        result = harness.run_requested(harness.tick_until_run_requested())

        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
        assert "too_many_tasks" in failure.error.message
        [error] = failure.user_failure_data.metadata["validation_errors"].value
        assert error["code"] == "too_many_tasks"
        assert error["line"] is None
        assert "50,005 embedding inputs" in error["message"]


def test_expired_keeps_finished_results_and_lists_the_rest(tmp_path: Path, start_local_api) -> None:
    api = start_local_api("--seconds-per-request", "0.05", "--window-seconds", "1")
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        harness.materialize(["ends_requests", "ends_batch"])
        result = harness.run_requested(harness.tick_until_run_requested())

        assert result.success
        output, errors = _frames(result)
        assert 0 < output.height < 60
        assert set(errors["error_code"].to_list()) == {"batch_expired"}
        _every_id_once(output, errors)
        assert "expired: 1" in harness.latest_metadata("ends_output")["batch_statuses"]


def test_cancelled_keeps_finished_results_and_lists_the_rest(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    api.configure(seconds_per_request=0.05)
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance)
        batch_id, client = harness.submit_and_wait_for_progress(api, "ends")
        client.batches.cancel(batch_id)
        result = harness.run_requested(harness.tick_until_run_requested())

        assert result.success
        output, errors = _frames(result)
        assert 5 <= output.height < 60
        assert set(errors["error_code"].to_list()) == {"batch_cancelled"}
        _every_id_once(output, errors)


def test_cancel_job_cancels_running_batches_and_the_sensor_keeps_what_finished(
    api: LocalBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read the event log two records a page, with more observations after the cancel request
    # than fit in one: the request must still be found, or the cancelled requests are retried.
    monkeypatch.setattr(event_log, "RECORDS_PER_PAGE", 2)
    api.configure(seconds_per_request=0.05)
    with dg.instance_for_test() as instance:
        harness = _harness(api, tmp_path, instance, max_attempts=3)
        batch_id, client = harness.submit_and_wait_for_progress(api, "ends")

        cancel = harness.defs.resolve_job_def("ends_cancel_job").execute_in_process(
            instance=instance
        )

        assert cancel.success
        assert client.batches.retrieve(batch_id).status in {"cancelling", "cancelled"}
        observation = instance.fetch_observations(dg.AssetKey("ends_batch"), limit=1).records[0]
        assert observation.asset_observation.metadata["cancel_requested"].value == [batch_id]
        for completed in range(5):
            instance.report_runless_asset_event(
                dg.AssetObservation("ends_batch", metadata={"completed": completed})
            )
        result = harness.run_requested(harness.tick_until_run_requested())
        output, errors = _frames(result)
        assert 5 <= output.height < 60
        assert set(errors["error_code"].to_list()) == {"batch_cancelled"}
        _every_id_once(output, errors)
