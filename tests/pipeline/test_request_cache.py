"""The request cache, the price before submitting and the budget guard, through the local Batch
API: what is uploaded is counted on the server, line by line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.core.request_template import RequestTemplate
from batch_assets.pipeline.keys import APPROVE_COST_TAG
from batch_assets.pipeline.sources import DataFrameSource
from tests.local_api.helpers import chat_request, jsonl
from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import (
    FROZEN_SECONDS_PER_REQUEST,
    Harness,
    build_harness,
    calls,
    uploaded_custom_ids,
)

NAME = "notes"
ROWS = 12
TEXTS = [f"Note {i}: the delivery was on time." for i in range(ROWS)]


def _rows() -> pl.DataFrame:
    return pl.DataFrame({"note_id": list(range(ROWS)), "text": TEXTS})


UPSTREAM = {"frame": _rows()}
"""What the upstream asset returns: a test changes it between runs."""


@dg.asset
def notes() -> pl.DataFrame:
    """The upstream rows, as the test last set them."""
    return UPSTREAM["frame"]


SOURCE = DataFrameSource(
    upstream="notes",
    template=RequestTemplate(
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        user_template="{text}",
        custom_id_column="note_id",
        params={"max_tokens": 400},
    ),
)
ALL = ["notes", f"{NAME}_requests", f"{NAME}_batch", f"{NAME}_output", f"{NAME}_errors"]
ALL += [f"{NAME}_results"]


@pytest.fixture(autouse=True)
def _fresh_rows() -> None:
    UPSTREAM["frame"] = _rows()


def _harness(api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance, **options: object):
    return build_harness(
        api, tmp_path, instance, name=NAME, source=SOURCE, extra_assets=[notes], **options
    )


def _answered_once(harness: Harness, api: LocalBatchAPI) -> dg.ExecuteInProcessResult:
    """Materialize everything while the batches answer nothing, then run the download the
    sensor asks for once they are let go."""
    api.configure(seconds_per_request=FROZEN_SECONDS_PER_REQUEST)
    assert harness.materialize(ALL).success
    api.configure(seconds_per_request=0.0)
    return harness.download()


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def _evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _check_passed(result: dg.ExecuteInProcessResult, name: str) -> bool:
    return _evaluation(result, name).passed


def test_a_rerun_with_one_row_changed_submits_exactly_that_request(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    harness = _harness(api, tmp_path, instance)
    assert _answered_once(harness, api).success
    first_answers = harness.latest_frames(NAME)[0]
    assert [len(ids) for ids in uploaded_custom_ids(api)] == [ROWS]

    UPSTREAM["frame"] = _rows().with_columns(
        pl.when(pl.col("note_id") == 7)
        .then(pl.lit("Note 7: it came broken."))
        .otherwise(pl.col("text"))
        .alias("text")
    )
    download = _answered_once(harness, api)

    assert download.success
    uploads = uploaded_custom_ids(api)
    assert len(uploads) == 2 and uploads[1] == ["7"]  # one line paid for, not the shard
    requests = harness.latest_metadata(f"{NAME}_requests")
    assert (requests["cache_hits"], requests["cache_misses"], requests["submitted_requests"]) == (
        ROWS - 1,
        1,
        1,
    )
    assert requests["cache_saved_usd"] > 0
    results = harness.latest_metadata(f"{NAME}_results")
    assert results["answered_rows"] == ROWS
    output, errors = harness.latest_frames(NAME)
    assert errors.height == 0 and output.height == ROWS
    assert sorted(output.filter(~pl.col("cached"))["custom_id"].to_list()) == ["7"]
    cached = output.filter(pl.col("cached")).sort("custom_id")
    assert cached["cached_at"].null_count() == 0
    before = first_answers.filter(pl.col("custom_id") != "7").sort("custom_id")
    assert cached.select("custom_id", "answer", "batch_id").equals(
        before.select("custom_id", "answer", "batch_id")
    )  # the stored answer and where it came from
    assert _check_passed(download, "every_request_answered_once")
    assert harness.latest_metadata(f"{NAME}_output")["openai.calls"] == 1


def test_a_rerun_with_nothing_changed_uploads_nothing_and_materializes_in_the_same_run(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    harness = _harness(api, tmp_path, instance)
    assert _answered_once(harness, api).success
    files, batches = calls(api, "POST /v1/files"), calls(api, "POST /v1/batches")
    learned = harness.latest_metadata(f"{NAME}_output")["usage_by_model"]
    assert learned["gpt-4o-mini"]["requests"] == ROWS

    job = harness.defs.resolve_job_def(f"{NAME}_submit_job")
    rerun = job.execute_in_process(instance=instance)

    assert rerun.success
    assert (calls(api, "POST /v1/files"), calls(api, "POST /v1/batches")) == (files, batches)
    assert {f"{NAME}_output", f"{NAME}_errors", f"{NAME}_results"} <= _materialized(rerun)
    assert _check_passed(rerun, "every_request_answered_once")
    output, errors = harness.latest_frames(NAME)
    assert output.height == ROWS and output["cached"].all() and errors.height == 0
    assert harness.latest_metadata(f"{NAME}_batch")["batch_count"] == 0
    # nothing sent, nothing learned: the next forecast still learns from the first run
    assert harness.latest_metadata(f"{NAME}_output")["usage_by_model"] == learned
    assert not harness.tick().run_requests  # nothing for the sensor to do


def test_identical_requests_are_submitted_once_and_answered_for_every_custom_id(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    questions = ["Capital of France?", "2+2?", "Capital of France?", "2+2?", "Capital of France?"]
    (tmp_path / "requests.jsonl").write_bytes(
        jsonl([chat_request(f"q{i}", text) for i, text in enumerate(questions)])
    )
    harness = build_harness(api, tmp_path, instance, name="quiz")

    harness.submit("quiz")
    download = harness.download()

    assert download.success
    assert uploaded_custom_ids(api) == [["q0", "q1"]]
    assert harness.latest_metadata("quiz_requests")["duplicates_folded"] == 3
    output, _ = harness.latest_frames("quiz")
    answers = dict(zip(output["custom_id"], output["answer"], strict=True))
    assert sorted(answers) == ["q0", "q1", "q2", "q3", "q4"]
    assert answers["q2"] == answers["q4"] == answers["q0"]
    assert answers["q3"] == answers["q1"]
    assert not output["cached"].any()
    assert _check_passed(download, "every_request_answered_once")


def test_cached_answers_survive_a_restart(api: LocalBatchAPI, tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        assert _answered_once(_harness(api, tmp_path, instance), api).success
    with dg.instance_for_test() as restarted:  # a new instance; the storage stays
        harness = _harness(api, tmp_path, restarted)
        rerun = harness.materialize(ALL)

        assert rerun.success
        assert len(uploaded_custom_ids(api)) == 1
        assert harness.latest_metadata(f"{NAME}_requests")["cache_hits"] == ROWS
        assert f"{NAME}_results" in _materialized(rerun)


def test_refresh_submits_everything_and_off_neither_reads_nor_writes(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    assert _answered_once(_harness(api, tmp_path, instance), api).success
    refresh = _harness(api, tmp_path, instance, cache="refresh")
    assert _answered_once(refresh, api).success
    assert [len(ids) for ids in uploaded_custom_ids(api)] == [ROWS, ROWS]
    assert not refresh.latest_frames(NAME)[0]["cached"].any()

    [backend] = (tmp_path / "gen" / "request_cache" / NAME).iterdir()  # the API's host:port
    assert backend.name == api.root_url.removeprefix("http://").replace(":", "_")
    segments = sorted((backend / "segments").iterdir())
    off = _harness(api, tmp_path, instance, cache="off")
    rerun = off.materialize(ALL)  # as before the cache: the same shard reuses its batch
    assert rerun.success and f"{NAME}_output" in _materialized(rerun)
    assert "cache_hits" not in off.latest_metadata(f"{NAME}_requests")
    assert not off.latest_frames(NAME)[0]["cached"].any()
    assert sorted((backend / "segments").iterdir()) == segments


def test_answers_older_than_the_max_age_are_asked_again_in_a_new_batch(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    assert _answered_once(_harness(api, tmp_path, instance), api).success
    strict = _harness(api, tmp_path, instance, cache_max_age=timedelta(microseconds=1))

    assert _answered_once(strict, api).success

    assert strict.latest_metadata(f"{NAME}_requests")["cache_hits"] == 0
    # the first run's batch (the same shard, completed) is not reused, its answers being as
    # old; its uploaded file, the same bytes, is
    assert calls(api, "POST /v1/batches") == 2 and calls(api, "POST /v1/files") == 1
    assert not strict.latest_frames(NAME)[0]["cached"].any()


def test_the_requests_show_a_price_per_model_before_anything_is_submitted(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    harness = _harness(api, tmp_path, instance)
    assert harness.materialize(["notes", f"{NAME}_requests"]).success

    requests = harness.latest_metadata(f"{NAME}_requests")
    assert calls(api, "POST /v1/files") == 0
    assert requests["cost_estimate_usd"] > 0
    assert requests["output_tokens_estimate"] == 400 * ROWS  # max_tokens: the upper bound
    table = requests["cost_estimate"]
    assert "tokenizer o200k_base" in table and "max_tokens (upper bound)" in table

    assert _answered_once(harness, api).success
    UPSTREAM["frame"] = _rows().with_columns(pl.format("{} again", "text").alias("text"))
    assert harness.materialize(["notes", f"{NAME}_requests"]).success
    table = harness.latest_metadata(f"{NAME}_requests")["cost_estimate"]
    assert "earlier usage" in table  # the output estimate now learns from the first run
    comparison = harness.latest_metadata(f"{NAME}_output")["estimate_vs_actual"]
    assert "gpt-4o-mini" in comparison


def test_the_budget_guard_blocks_over_the_limit_and_passes_when_approved(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    harness = _harness(api, tmp_path, instance, max_cost_usd=0.000001)

    blocked = harness.materialize(ALL, raise_on_error=False)

    assert calls(api, "POST /v1/files") == 0 and calls(api, "POST /v1/batches") == 0
    assert f"{NAME}_batch" not in _materialized(blocked)
    assert [e.check_name for e in blocked.get_asset_check_evaluations()] == ["cost_within_budget"]
    evaluation = _evaluation(blocked, "cost_within_budget")
    assert not evaluation.passed
    assert evaluation.description is not None
    assert "against max_cost_usd $0.000001" in evaluation.description
    assert "gpt-4o-mini (12 requests" in evaluation.description

    approved = harness.materialize(ALL, tags={APPROVE_COST_TAG: "1.00"})

    assert approved.success
    assert calls(api, "POST /v1/batches") == 1
    metadata = harness.latest_metadata(f"{NAME}_batch")
    assert metadata["cost_approved_usd"] == 1.0 and metadata["max_cost_usd"] == 0.000001


def test_the_submission_step_refuses_over_the_budget_without_its_check(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    harness = _harness(api, tmp_path, instance, max_cost_usd=0.000001)
    assert harness.materialize(["notes", f"{NAME}_requests"], raise_on_error=False)

    alone = harness.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(f"{NAME}_batch")],
        raise_on_error=False,
    )

    assert not alone.success
    failure = next(event for event in alone.all_events if event.is_step_failure)
    assert "Over budget, nothing uploaded" in failure.step_failure_data.error.message
    assert calls(api, "POST /v1/files") == 0


def test_a_newer_submission_cancels_the_one_it_supersedes_and_keeps_its_answers(
    api: LocalBatchAPI, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    harness = _harness(api, tmp_path, instance, on_superseded="cancel")
    assert harness.materialize(["notes"]).success
    old_batch, client = harness.submit_held(api, NAME, answered=3)

    UPSTREAM["frame"] = _rows().with_columns(pl.format("{} Really?", "text").alias("text"))
    assert harness.materialize([f"{NAME}_requests", f"{NAME}_batch", "notes"]).success

    assert client.batches.retrieve(old_batch).status in {"cancelling", "cancelled"}
    api.configure(answer_at_most=None)
    assert harness.run_until_downloaded(f"{NAME}_output").success
    wait_for(lambda: client.batches.retrieve(old_batch).status == "cancelled")
    # The download run the sensor asks for when the old batch ends stores what it answered.
    for request in harness.tick().run_requests or []:
        assert harness.run_requested(request).success

    UPSTREAM["frame"] = _rows()  # back to the superseded input: its 3 answers are cached
    assert harness.materialize(["notes", f"{NAME}_requests"]).success
    assert harness.latest_metadata(f"{NAME}_requests")["cache_hits"] == 3
