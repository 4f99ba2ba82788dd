"""How the pipeline ends for each way a batch can end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.core.limits import EMBEDDINGS, BatchLimits
from batch_assets.pipeline import event_log
from tests.local_api_server import LocalBatchAPI
from tests.pipeline.harness import build_harness, result_frames

NAME = "ends"
IDS = [f"r{i:03d}" for i in range(60)]
# The local API answers this many requests of a batch, then holds it in progress (its
# `answer_at_most`); the batch answers requests in input order, so these are the first ones.
ANSWERED = 5
# Past the default "24h" completion window of a batch created now.
PAST_THE_WINDOW = 86400 + 60


def _every_id_once(output: pl.DataFrame, errors: pl.DataFrame) -> None:
    returned = output["custom_id"].to_list() + errors["custom_id"].to_list()
    assert sorted(returned) == IDS


def _answered_then_ended(output: pl.DataFrame, errors: pl.DataFrame, code: str) -> None:
    """The first `ANSWERED` requests answered, every other one listed with error `code`."""
    assert sorted(output["custom_id"].to_list()) == IDS[:ANSWERED]
    assert output["status_code"].to_list() == [200] * ANSWERED
    assert sorted(errors["custom_id"].to_list()) == IDS[ANSWERED:]
    assert errors["error_code"].to_list() == [code] * (len(IDS) - ANSWERED)
    _every_id_once(output, errors)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_completed_with_every_request_failed(api: LocalBatchAPI, tmp_path: Path) -> None:
    api.configure(fail_rate=1.0)
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, custom_ids=IDS, max_attempts=1)
        result = harness.submit_and_download(NAME)

        assert result.success
        output, errors = result_frames(result, NAME)
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
    limits = BatchLimits(max_embedding_inputs=60_000)

    def requests() -> Iterator[dict]:
        for i in range(5):
            yield {
                "custom_id": f"e{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                # distinct inputs: identical requests would be folded into one
                "body": {"model": "text-embedding-3-small", "input": [f"x{i}"] * 10_001},
            }

    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, source=requests, endpoint=EMBEDDINGS, limits=limits
        )
        result = harness.submit_and_download(NAME)

        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
        assert "too_many_tasks" in failure.error.message
        [error] = failure.user_failure_data.metadata["validation_errors"].value
        assert error["code"] == "too_many_tasks"
        assert error["line"] is None
        assert "50,005 embedding inputs" in error["message"]


def test_expired_keeps_finished_results_and_lists_the_rest(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, custom_ids=IDS, max_attempts=1)
        harness.submit_held(api, NAME, ANSWERED)
        api.configure(clock_offset_seconds=PAST_THE_WINDOW)
        result = harness.download()

        assert result.success
        output, errors = result_frames(result, NAME)
        _answered_then_ended(output, errors, "batch_expired")
        assert "expired: 1" in harness.latest_metadata("ends_output")["batch_statuses"]


def test_cancelled_keeps_finished_results_and_lists_the_rest(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, custom_ids=IDS, max_attempts=1)
        batch_id, client = harness.submit_held(api, NAME, ANSWERED)
        client.batches.cancel(batch_id)
        result = harness.download()

        assert result.success
        output, errors = result_frames(result, NAME)
        _answered_then_ended(output, errors, "batch_cancelled")


def test_cancel_job_cancels_running_batches_and_the_sensor_keeps_what_finished(
    api: LocalBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read the event log two records a page, with more observations after the cancel request
    # than fit in one: the request must still be found, or the cancelled requests are retried.
    monkeypatch.setattr(event_log, "RECORDS_PER_PAGE", 2)
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, custom_ids=IDS)
        batch_id, client = harness.submit_held(api, NAME, ANSWERED)

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
        result = harness.download()
        assert result.success
        output, errors = result_frames(result, NAME)
        _answered_then_ended(output, errors, "batch_cancelled")
