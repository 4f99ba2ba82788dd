"""Requests that fail for a retryable reason go into follow-up batches; the rest are final."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import (
    FROZEN_SECONDS_PER_REQUEST,
    build_harness,
    calls,
    result_frames,
)

NAME = "retry"
IDS = [f"q{i:03d}" for i in range(60)]
DOWNLOADS = "GET /v1/files/{id}/content"
# The local API answers this many requests of a batch, then holds it (its `answer_at_most`).
ANSWERED = 5
# Past the default "24h" completion window of a batch created now.
PAST_THE_WINDOW = 86400 + 60


def _answered_on_attempt(output: pl.DataFrame, attempt: int) -> list[str]:
    """The custom_ids answered by the batches of attempt `attempt`, sorted."""
    return sorted(output.filter(pl.col("attempts") == attempt)["custom_id"].to_list())


def test_a_cancel_nobody_asked_for_is_retried_until_every_request_is_answered(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, custom_ids=IDS)
        batch_id, client = harness.submit_held(api, NAME, ANSWERED)
        client.batches.cancel(batch_id)
        api.configure(answer_at_most=None)

        result = harness.run_until_downloaded("retry_output")

        output, errors = result_frames(result, NAME)
        assert sorted(output["custom_id"].to_list()) == IDS
        assert errors.height == 0
        # The batch answers requests in input order: the first ones before the cancel, the
        # rest in the follow-up batch.
        assert _answered_on_attempt(output, 1) == IDS[:ANSWERED]
        assert _answered_on_attempt(output, 2) == IDS[ANSWERED:]
        assert calls(api, "POST /v1/batches") == 2
        metadata = harness.latest_metadata("retry_output")
        downloaded = {*metadata["output_files"], *metadata["error_files"]}
        # Each result file is downloaded once: attempt 2's run reads attempt 1's copies.
        assert len(downloaded) == 3
        assert calls(api, DOWNLOADS) == 3
        follow_up = harness.latest_metadata("retry_batch")
        assert follow_up["attempt"] == 2
        assert follow_up["request_count"] == len(IDS) - ANSWERED
        assert harness.latest_metadata("retry_output")["attempts"] == 2


def test_retries_stop_at_max_attempts_and_keep_each_request_once(
    api: LocalBatchAPI, tmp_path: Path
) -> None:
    # Each batch answers its first requests, then the clock moves past its completion window.
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, custom_ids=IDS, max_attempts=2)
        _, client = harness.submit_held(api, NAME, ANSWERED)
        api.configure(clock_offset_seconds=PAST_THE_WINDOW)
        assert harness.download().success
        follow_up = harness.latest_metadata("retry_batch")
        assert follow_up["attempt"] == 2
        [batch_id] = follow_up["batch_ids"]
        wait_for(lambda: client.batches.retrieve(batch_id).request_counts.completed == ANSWERED)
        api.configure(clock_offset_seconds=2 * PAST_THE_WINDOW)

        result = harness.run_until_downloaded("retry_output")

        output, errors = result_frames(result, NAME)
        assert sorted(output["custom_id"].to_list() + errors["custom_id"].to_list()) == IDS
        assert _answered_on_attempt(output, 1) == IDS[:ANSWERED]
        assert _answered_on_attempt(output, 2) == IDS[ANSWERED : 2 * ANSWERED]
        assert sorted(errors["custom_id"].to_list()) == IDS[2 * ANSWERED :]
        assert errors["error_code"].to_list() == ["batch_expired"] * (len(IDS) - 2 * ANSWERED)
        assert errors["attempts"].to_list() == [2] * errors.height
        assert calls(api, "POST /v1/batches") == 2


def test_errors_of_the_request_itself_are_not_retried(api: LocalBatchAPI, tmp_path: Path) -> None:
    broken = {"q007", "q042"}
    with dg.instance_for_test() as instance:
        harness = build_harness(api, tmp_path, instance, name=NAME, custom_ids=IDS, broken=broken)
        harness.submit(NAME)

        result = harness.run_until_downloaded("retry_output")

        output, errors = result_frames(result, NAME)
        assert set(errors["custom_id"].to_list()) == broken
        assert errors["status_code"].to_list() == [400, 400]
        assert errors["attempts"].to_list() == [1, 1]
        assert output.height == 58
        assert calls(api, "POST /v1/batches") == 1


def test_token_limit_waits_for_capacity_and_resubmits(
    api: LocalBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_ASSETS_TOKEN_LIMIT_BACKOFF_SECONDS", "0.5")
    # One shard's tokens fit under the limit, two do not. The batch validated first holds the
    # capacity, answering nothing, until the other has failed on the limit; then it runs.
    api.configure(enqueued_token_limit=300, seconds_per_request=FROZEN_SECONDS_PER_REQUEST)
    with dg.instance_for_test() as instance:
        harness = build_harness(
            api, tmp_path, instance, name=NAME, custom_ids=IDS, max_attempts=1, shard_size=30
        )
        harness.submit(NAME)
        harness.wait_for_batches(api, NAME, "failed")
        api.configure(seconds_per_request=0.0)

        result = harness.run_until_downloaded("retry_output")

        output, errors = result_frames(result, NAME)
        assert errors.height == 0
        assert sorted(output["custom_id"].to_list()) == IDS
        assert sorted(set(output["attempts"].to_list())) == [1, 2]
        assert harness.latest_metadata("retry_batch")["token_limit_waits"] == 1
