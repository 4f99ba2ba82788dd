"""The completion sensor's cursor: stored, read back, and rebuilt after it is lost."""

from __future__ import annotations

import json

import dagster as dg

from batch_assets.pipeline.keys import RUN_KEY_TAG, submission_run_key
from batch_assets.pipeline.ledger import AttemptRecord
from batch_assets.pipeline.sensor import WatchedPipeline, read_new_attempts
from batch_assets.pipeline.sensor_cursor import PendingAttempt, Progress, SensorCursor
from tests.pipeline.harness import record_attempt, submitted

PIPELINE = WatchedPipeline("docs", dg.AssetKey("docs_batch"), (dg.AssetKey("docs_output"),))


@dg.op
def nothing() -> None:
    """A step that does nothing."""


@dg.job
def finished() -> None:
    """A run that stands for the download run the sensor asked for."""
    nothing()


def test_a_cursor_reads_back_as_it_was_stored() -> None:
    cursor = SensorCursor(
        after=41,
        pending={
            "batch-download-1": PendingAttempt(
                "docs", ["batch_a", "batch_b"], 2, 3, Progress(10, 4, 1, ("in_progress",))
            ),
            "batch-download-2": PendingAttempt("docs", ["batch_c"]),
        },
    )
    assert SensorCursor.load(cursor.dump()) == cursor
    assert SensorCursor.load(None) == SensorCursor() == SensorCursor.load("")


def test_a_cursor_stored_by_the_previous_version_still_reads() -> None:
    """Ticks of the version before the ledger stored no attempt number: it is the first."""
    stored = {
        "after": 7,
        "pending": {
            "batch-download-1": {
                "pipeline": "docs",
                "batch_ids": ["batch_a"],
                "progress": {"total": 3, "completed": 3, "failed": 0, "statuses": ["completed"]},
                "token_limit_waits": 1,
            }
        },
    }
    cursor = SensorCursor.load(json.dumps(stored))
    assert cursor.pending["batch-download-1"] == PendingAttempt(
        "docs", ["batch_a"], 1, 1, Progress(3, 3, 0, ("completed",))
    )


def test_new_attempts_become_pending_and_the_cursor_moves_past_every_record(
    instance: dg.DagsterInstance,
) -> None:
    record_attempt(instance, PIPELINE.submission_key, AttemptRecord(1, submitted("batch_a")))
    record_attempt(
        instance,
        PIPELINE.submission_key,
        AttemptRecord(2, submitted("batch_b"), retry_of="root", token_limit_waits=1),
    )
    instance.report_runless_asset_event(dg.AssetMaterialization(PIPELINE.submission_key))
    cursor = SensorCursor()

    read_new_attempts(instance, [PIPELINE], cursor)

    assert cursor.pending == {
        submission_run_key(["batch_a"]): PendingAttempt("docs", ["batch_a"], 0, 1),
        submission_run_key(["batch_b"]): PendingAttempt("docs", ["batch_b"], 1, 2),
    }
    newest = instance.fetch_materializations(PIPELINE.submission_key, limit=1).records[0]
    assert cursor.after == newest.storage_id
    read_new_attempts(instance, [PIPELINE], cursor)  # nothing new: nothing changes
    assert len(cursor.pending) == 2 and cursor.after == newest.storage_id


def test_a_lost_cursor_skips_attempts_whose_download_run_exists(
    instance: dg.DagsterInstance,
) -> None:
    record_attempt(instance, PIPELINE.submission_key, AttemptRecord(1, submitted("batch_a")))
    record_attempt(instance, PIPELINE.submission_key, AttemptRecord(1, submitted("batch_b")))
    downloaded = submission_run_key(["batch_a"])
    finished.execute_in_process(instance=instance, tags={RUN_KEY_TAG: downloaded})
    cursor = SensorCursor.load(None)

    read_new_attempts(instance, [PIPELINE], cursor)

    assert list(cursor.pending) == [submission_run_key(["batch_b"])]
