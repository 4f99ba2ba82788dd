"""The fault suite: a pipeline driven to its end under each fault, then the three guarantees.

After every fault: each input custom_id is in exactly one of output and errors; no two batches
share a shard key (nor two uploads a name); no file under the pipeline's storage is half-written.
`FAULTS` is also the README's table (`test_the_readme_table_is_the_fault_suite`).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import openai
import polars as pl
import pytest
from openai.types import Batch
from upath import UPath

from tests.local_api_server import LocalBatchAPI, wait_for
from tests.pipeline.harness import (
    FROZEN_SECONDS_PER_REQUEST,
    STORAGE_FOLDER,
    Harness,
    build_harness,
    calls,
)
from tests.pipeline.invariants import (
    assert_each_custom_id_once,
    assert_no_half_written_file,
    assert_no_shared_shard_key,
)
from tests.pipeline.killed_runs import kill_when, start_run

ROOT = Path(__file__).resolve().parents[2]
NAME = "faults"
IDS = [f"x{i:03d}" for i in range(90)]
SHARD_SIZE = 30
# How many requests of each batch the local API answers while the suite holds its batches.
ANSWERED = 5
MAX_ATTEMPTS = 3
OUTPUT = f"{NAME}_output"
BASE_URL_VARIABLE = "FAULT_SUITE_BASE_URL"
TMP_PATH_VARIABLE = "FAULT_SUITE_TMP_PATH"
JOB = "fault_suite_job"
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
MAX_RETRIES = 2
# Three shards of 30 requests, up to 3 attempts, files under the test's tmp_path.
PIPELINE: dict[str, Any] = {
    "name": NAME,
    "custom_ids": IDS,
    "max_attempts": MAX_ATTEMPTS,
    "shard_size": SHARD_SIZE,
    "asset_job": JOB,
}


def asset_job() -> dg.JobDefinition:
    """The pipeline's asset job, rebuilt from the environment, as Dagster re-executes runs."""
    base_url, tmp_path = os.environ[BASE_URL_VARIABLE], Path(os.environ[TMP_PATH_VARIABLE])
    harness = build_harness(base_url, tmp_path, max_retries=MAX_RETRIES, **PIPELINE)
    return harness.defs.resolve_job_def(JOB)


def main(base_url: str, tmp_path: str, step: str = "submit") -> None:
    """What a killed run executes: the submission, or the download the sensor asks for."""
    harness = build_harness(base_url, Path(tmp_path), max_retries=MAX_RETRIES, **PIPELINE)
    if step == "submit":
        harness.submit(NAME)
    else:
        harness.download()


@dataclass
class FaultRun:
    """One fault's test: the local Batch API, the pipeline, and the steps every fault shares."""

    api: LocalBatchAPI
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    max_retries: int = MAX_RETRIES
    _harness: Harness | None = field(default=None, repr=False)

    @property
    def harness(self) -> Harness:
        """The pipeline's harness, made on first use with `max_retries`."""
        if self._harness is None:
            self._harness = build_harness(
                self.api, self.tmp_path, max_retries=self.max_retries, **PIPELINE
            )
        return self._harness

    @property
    def client(self) -> openai.OpenAI:
        """The SDK pointed at the local Batch API."""
        return self.api.client()

    def calls(self, route: str) -> int:
        """How many calls the local Batch API has answered on `route`."""
        return calls(self.api, route)

    def submit(self) -> None:
        """Materialize the requests and their batches."""
        assert self.harness.submit(NAME).success

    def finish(self) -> dg.ExecuteInProcessResult:
        """Tick the sensor and run what it asks for until the output is materialized."""
        return self.harness.run_until_downloaded(OUTPUT)

    def killed_run(self, ready: Callable[[], object], step: str = "submit") -> None:
        """The submission or the download in a child process, SIGKILLed once `ready()` holds."""
        log = self.tmp_path / f"killed-{step}.log"
        run = start_run(__name__, self.api.base_url, str(self.tmp_path), step, log=log)
        kill_when(run, ready, log)

    def reexecute_from_failure(self, run_id: str) -> dg.JobExecutionResult:
        """What "Re-execute from failure" in the UI does; it must materialize the output."""
        self.monkeypatch.setenv(BASE_URL_VARIABLE, self.api.base_url)
        self.monkeypatch.setenv(TMP_PATH_VARIABLE, str(self.tmp_path))
        instance = self.harness.instance
        again = dg.execute_job(
            dg.reconstructable(asset_job),
            instance,
            IN_PROCESS,
            reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
        )
        assert again.success
        assert instance.get_run_by_id(again.run_id).parent_run_id == run_id
        latest = instance.get_latest_materialization_event(dg.AssetKey(OUTPUT))
        assert latest is not None and latest.run_id == again.run_id
        return again

    def temporaries(self) -> list[Path]:
        """Temporary files under the pipeline's storage."""
        return list((self.tmp_path / STORAGE_FOLDER).rglob(".*"))

    def hold_batches(self) -> None:
        """Make every batch answer `ANSWERED` requests, then hold it in progress."""
        self.api.configure(answer_at_most=ANSWERED)

    def release_batches(self) -> None:
        """Let held batches answer the rest of their requests."""
        self.api.configure(answer_at_most=None)

    def wait_until_held(self) -> list[Batch]:
        """The submission's batches, once each has answered `ANSWERED` requests (and is held)."""
        batch_ids = self.harness.latest_metadata(f"{NAME}_batch")["batch_ids"]
        retrieve = self.client.batches.retrieve

        def held() -> list[Batch] | None:
            batches = [retrieve(batch_id) for batch_id in batch_ids]
            counts = [batch.request_counts.completed for batch in batches]
            assert max(counts) <= ANSWERED, counts
            return batches if counts == [ANSWERED] * len(batches) else None

        batches = wait_for(held)
        assert {batch.status for batch in batches} == {"in_progress"}
        return batches


def killed_after_upload(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.api.configure(create_delay_seconds=600)
    run.killed_run(lambda: run.calls("POST /v1/batches") >= 1)
    assert run.client.batches.list().data == []
    run.api.configure(create_delay_seconds=0)
    run.submit()
    assert run.harness.latest_metadata(f"{NAME}_batch")["reused_uploads"] >= 1
    return run.finish()


def killed_after_create(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.api.configure(create_reply_delay_seconds=600)
    run.killed_run(lambda: run.client.batches.list().data)
    run.api.configure(create_reply_delay_seconds=0)
    run.submit()
    assert run.harness.latest_metadata(f"{NAME}_batch")["reused_batches"] >= 1
    return run.finish()


def materialized_twice(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.submit()
    run.submit()
    assert run.harness.latest_metadata(f"{NAME}_batch")["reused_batches"] == 3
    return run.finish()


def materialized_again_during_a_follow_up(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.api.configure(fail_rate=0.3)
    run.submit()
    assert run.harness.download().success
    assert run.harness.latest_metadata(f"{NAME}_batch")["attempt"] == 2
    run.submit()
    assert run.harness.latest_metadata(f"{NAME}_batch")["reused_batches"] == 3
    return _some_answered_on_a_later_attempt(run)


def error_bursts(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.max_retries = 10
    run.api.configure(http_error_rate=0.4, retry_after_seconds=0.05)
    run.submit()
    result = run.finish()
    assert run.api.admin("GET", "stats")["injected_errors"] > 0
    return result


def download_cut(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.submit()
    run.api.configure(cut_downloads_after_bytes=1000)
    result = run.finish()
    files = run.harness.latest_metadata(OUTPUT)["output_files"]
    assert len(files) == 3
    for url in files:
        path = UPath(url)
        batch_id = path.name.removesuffix("_output.jsonl")
        file_id = run.client.batches.retrieve(batch_id).output_file_id
        assert path.read_bytes() == run.client.files.content(file_id).read()
    assert run.calls("GET /v1/files/{id}/content") >= 2 * len(files)
    return result


def download_killed(run: FaultRun) -> dg.JobExecutionResult:
    run.submit()
    run.api.configure(stall_downloads_after_bytes=2000)
    run.killed_run(run.temporaries, step="download")
    assert run.temporaries()
    run.api.configure(stall_downloads_after_bytes=None)
    instance = run.harness.instance
    [killed] = instance.get_runs(limit=1)
    instance.report_run_failed(killed)  # what run monitoring does when a run's process is gone
    assert run.harness.tick().run_requests == []
    return run.reexecute_from_failure(killed.run_id)


def api_killed_and_restarted(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.hold_batches()
    run.submit()
    run.harness.tick()
    batch_ids = [batch.id for batch in run.wait_until_held()]
    run.api.stop(signal.SIGKILL)
    # Restarted with its flags only: the hold is gone and the batches go on from their
    # checkpoints.
    run.api.restart()
    assert run.api.admin()["answer_at_most"] is None
    result = run.finish()
    for batch_id in batch_ids:
        batch = run.client.batches.retrieve(batch_id)
        assert batch.status == "completed"
        assert (batch.request_counts.completed, batch.request_counts.failed) == (SHARD_SIZE, 0)
    output, _ = run.harness.latest_frames(NAME)
    assert output["attempts"].to_list() == [1] * len(IDS)
    assert run.calls("POST /v1/batches") == 0  # since the restart: no batch submitted again
    return result


def sensor_tick_raises(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.submit()
    run.api.configure(http_error_rate=1.0, retry_after_seconds=0.01)
    with pytest.raises((openai.RateLimitError, openai.InternalServerError)):
        run.harness.tick()
    run.api.configure(http_error_rate=0.0)
    return run.finish()


def download_run_fails(run: FaultRun) -> dg.JobExecutionResult:
    run.submit()
    request = run.harness.tick_until_run_requested()
    run.api.configure(http_error_rate=1.0, retry_after_seconds=0.01)
    failed = run.harness.run_requested(request)
    assert not failed.success
    run.api.configure(http_error_rate=0.0)
    again = run.reexecute_from_failure(failed.run_id)
    assert run.harness.tick().run_requests == []
    downloads = run.calls("GET /v1/files/{id}/content")
    assert run.harness.run_requested(request).success
    assert run.calls("GET /v1/files/{id}/content") == downloads
    return again


def _some_answered_on_a_later_attempt(run: FaultRun) -> dg.ExecuteInProcessResult:
    result = run.finish()
    output, _ = run.harness.latest_frames(NAME)
    assert output.filter(pl.col("attempts") > 1).height > 0
    return result


def per_request_errors(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.api.configure(fail_rate=0.3)
    run.submit()
    return _some_answered_on_a_later_attempt(run)


def request_timeouts(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.api.configure(timeout_rate=0.3)
    run.submit()
    return _some_answered_on_a_later_attempt(run)


def window_over(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.api.configure(answer_at_most=ANSWERED, window_seconds=0.5)
    run.submit()
    result = run.finish()
    assert run.harness.latest_metadata(OUTPUT)["attempts"] == MAX_ATTEMPTS
    # Each batch answers 5 and expires: 3 batches of 90 requests, 3 of the 75 left, 2 of 60.
    output, errors = run.harness.latest_frames(NAME)
    assert output.height == ANSWERED * (3 + 3 + 2)
    assert errors.height == len(IDS) - output.height
    assert errors["attempts"].to_list() == [MAX_ATTEMPTS] * errors.height
    return result


def cancelled_outside(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.hold_batches()
    run.submit()
    cancelled = run.wait_until_held()[0]
    run.client.batches.cancel(cancelled.id)
    run.release_batches()
    result = run.finish()
    output, errors = run.harness.latest_frames(NAME)
    assert errors.height == 0
    # The cancelled batch's unfinished requests, and only they, answered by a follow-up batch.
    assert output.filter(pl.col("attempts") == 1).height == len(IDS) - (SHARD_SIZE - ANSWERED)
    assert output.filter(pl.col("attempts") == 2).height == SHARD_SIZE - ANSWERED
    assert run.harness.latest_metadata(f"{NAME}_batch")["request_count"] == SHARD_SIZE - ANSWERED
    assert run.calls("POST /v1/batches") == 4
    return result


def cancel_job(run: FaultRun) -> dg.ExecuteInProcessResult:
    # Every batch is held in progress when the job starts; cancelled batches end at once.
    run.hold_batches()
    run.submit()
    run.wait_until_held()
    job = run.harness.defs.resolve_job_def(f"{NAME}_cancel_job")
    assert job.execute_in_process(instance=run.harness.instance).success
    run.release_batches()
    result = run.finish()
    output, errors = run.harness.latest_frames(NAME)
    assert output.height == 3 * ANSWERED
    assert output["attempts"].to_list() == [1] * output.height
    assert errors["error_code"].to_list() == ["batch_cancelled"] * (len(IDS) - 3 * ANSWERED)
    assert run.calls("POST /v1/batches") == 3  # nothing resubmitted
    return result


def token_limit(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.monkeypatch.setenv("BATCH_ASSETS_TOKEN_LIMIT_BACKOFF_SECONDS", "0.5")
    # One shard's tokens fit under the limit, two do not: the batch validated first holds the
    # capacity, answering nothing, until the other two have failed on the limit; then it runs.
    run.api.configure(enqueued_token_limit=300, seconds_per_request=FROZEN_SECONDS_PER_REQUEST)
    run.submit()
    run.harness.wait_for_batches(run.api, NAME, "failed", count=2)
    run.api.configure(seconds_per_request=0.0)
    result = run.finish()
    assert run.harness.latest_metadata(f"{NAME}_batch")["token_limit_waits"] >= 1
    return result


def every_request_fails(run: FaultRun) -> dg.ExecuteInProcessResult:
    run.api.configure(fail_rate=1.0)
    run.submit()
    result = run.finish()
    assert run.harness.latest_metadata(OUTPUT)["dagster/row_count"] == 0
    assert run.harness.latest_metadata(f"{NAME}_errors")["dagster/row_count"] == len(IDS)
    return result


@dataclass(frozen=True)
class Fault:
    """A fault: how the suite makes it happen, what must hold besides the three guarantees."""

    name: str
    how: str
    held: str
    drive: Callable[[FaultRun], dg.ExecuteInProcessResult | dg.JobExecutionResult]
    errors: frozenset[str] = frozenset()


FAULTS = [
    Fault(
        "run killed after the upload, before the batch is created",
        "child run SIGKILLed while `POST /v1/batches` is held (`create_delay_seconds`)",
        "the re-run reuses the orphaned uploads",
        killed_after_upload,
    ),
    Fault(
        "run killed after the batch is created, before it is recorded",
        "child run SIGKILLed while the create answer is held (`create_reply_delay_seconds`)",
        "the re-run finds the batches by shard key and keeps them",
        killed_after_create,
    ),
    Fault(
        "the same requests materialized twice",
        "two materializations of the submission",
        "the second reuses all three batches",
        materialized_twice,
    ),
    Fault(
        "the same requests materialized again while a follow-up batch runs",
        "`fail_rate` 0.3; the submission materialized again once attempt 2 is submitted",
        "the follow-up is still found and finishes the submission; nothing is submitted twice",
        materialized_again_during_a_follow_up,
        frozenset({"server_error"}),
    ),
    Fault(
        "429 and 503 bursts with `retry-after` on every endpoint",
        "`http_error_rate` 0.4 for the whole pipeline",
        "the SDK retries; the pipeline ends as if nothing happened",
        error_bursts,
    ),
    Fault(
        "connection cut in the middle of every download",
        "`cut_downloads_after_bytes`",
        "each download resumes with a Range request; files equal the server's bytes",
        download_cut,
    ),
    Fault(
        "download run killed mid-download",
        "child run SIGKILLed while a download is held (`stall_downloads_after_bytes`)",
        "the sensor does not ask twice; re-executed from failure, the run removes the dead "
        "run's temporary file and succeeds",
        download_killed,
    ),
    Fault(
        "Batch API killed (`kill -9`) and restarted while batches run",
        "SIGKILL, restart on the same state",
        "the batches carry on; the sensor finds them again",
        api_killed_and_restarted,
    ),
    Fault(
        "a sensor tick that raises",
        "every call answered 429/503 during one tick",
        "the next tick requests the run",
        sensor_tick_raises,
    ),
    Fault(
        "a download run that fails",
        "every call answered 429/503 during the run",
        "re-executing it from failure, as the UI does, succeeds; a third run downloads nothing "
        "again; the sensor asks no second time",
        download_run_fails,
    ),
    Fault(
        "per-request 5xx",
        "`fail_rate` 0.3",
        "failed requests resubmitted in follow-up batches, up to `max_attempts`; some answered "
        "there",
        per_request_errors,
        frozenset({"server_error"}),
    ),
    Fault(
        "`request_timeout` lines",
        "`timeout_rate` 0.3",
        "timed-out requests resubmitted in follow-up batches, up to `max_attempts`; some "
        "answered there",
        request_timeouts,
        frozenset({"request_timeout"}),
    ),
    Fault(
        "completion window over",
        "each batch answers 5 (`answer_at_most`), then its `window_seconds` 0.5 pass",
        "finished results kept, the rest resubmitted, then listed as `batch_expired`",
        window_over,
        frozenset({"batch_expired"}),
    ),
    Fault(
        "batch cancelled outside the pipeline",
        "SDK `batches.cancel` on one batch",
        "its unfinished requests resubmitted",
        cancelled_outside,
    ),
    Fault(
        "batches cancelled by `<name>_cancel_job`",
        "the job, mid-run",
        "finished results kept, the rest listed as `batch_cancelled`, not resubmitted",
        cancel_job,
        frozenset({"batch_cancelled"}),
    ),
    Fault(
        "`token_limit_exceeded`",
        "`enqueued_token_limit` below the three shards' tokens",
        "the pipeline waits, resubmits with backoff, and never fails",
        token_limit,
    ),
    Fault(
        "every request failed",
        "`fail_rate` 1",
        "retried up to `max_attempts`; empty output, every request in the errors",
        every_request_fails,
        frozenset({"server_error"}),
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.drive.__name__ for fault in FAULTS])
def test_fault(
    fault: Fault, api: LocalBatchAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = FaultRun(api, tmp_path, monkeypatch)

    result = fault.drive(run)

    assert result.success
    output, errors = run.harness.latest_frames(NAME)
    assert_each_custom_id_once(output, errors, IDS)
    assert set(errors["error_code"].drop_nulls().to_list()) <= fault.errors
    api.configure(http_error_rate=0.0)
    assert_no_shared_shard_key(run.client)
    assert_no_half_written_file(tmp_path / STORAGE_FOLDER)


def readme_table() -> str:
    """The README's table of faults, from `FAULTS`."""
    rows = [
        "| fault | how the suite makes it happen | what held, besides the three guarantees |",
        "|---|---|---|",
    ]
    rows += [f"| {fault.name} | {fault.how} | {fault.held} |" for fault in FAULTS]
    return "\n".join(rows)


def test_the_readme_table_is_the_fault_suite() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"^\| fault \|.*?(?=\n\n)", readme, re.MULTILINE | re.DOTALL)
    assert table is not None
    assert table.group(0) == readme_table()
