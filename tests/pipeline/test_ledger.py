"""The ledger: attempts and cancel requests written as metadata and read back as records."""

from __future__ import annotations

from functools import partial

import dagster as dg

from batch_assets.core.records import Submission
from batch_assets.pipeline.keys import LEDGER_BATCHES, submission_run_key
from batch_assets.pipeline.ledger import AttemptRecord, CancelRequest, Ledger
from tests.pipeline.harness import record_attempt, submitted

BATCH_KEY = dg.AssetKey("docs_batch")


def submission(*batch_ids: str) -> Submission:
    return Submission("docs", "/v1/chat/completions", "127.0.0.1", submitted(*batch_ids))


def test_an_attempt_reads_back_as_it_was_written(instance: dg.DagsterInstance) -> None:
    add = partial(record_attempt, instance, BATCH_KEY)
    attempt = AttemptRecord(
        number=2,
        batches=submitted("batch_b", "batch_c"),
        retry_of="batch-download-0123",
        token_limit_waits=3,
        reused_batches=1,
        reused_uploads=1,
    )
    add(attempt)
    assert Ledger(instance, BATCH_KEY).latest_attempt() == attempt
    assert attempt.submission_key == "batch-download-0123"
    assert attempt.run_key == submission_run_key(["batch_c", "batch_b"])


def test_the_batches_are_stored_as_named_fields(instance: dg.DagsterInstance) -> None:
    metadata = AttemptRecord(1, submitted("batch_a")).to_metadata()
    [stored] = metadata[LEDGER_BATCHES].value
    assert stored == {
        "batch_id": "batch_a",
        "input_file_id": "file-batch_a",
        "shard_key": "key-batch_a",
        "shard_url": "file:///batch_a",
        "request_count": 3,
        "model": None,
    }


def test_a_materialization_without_an_attempt_is_not_one(instance: dg.DagsterInstance) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(BATCH_KEY, metadata={"batch_ids": ["batch_a"]})
    )
    ledger = Ledger(instance, BATCH_KEY)
    assert ledger.latest_attempt() is None
    assert [attempt for _, attempt in ledger.attempts_after(0)] == [None]


def test_the_history_of_a_submission_holds_its_follow_ups_in_order(
    instance: dg.DagsterInstance,
) -> None:
    add = partial(record_attempt, instance, BATCH_KEY)
    first = submission("batch_a", "batch_b")
    root = submission_run_key(first.batch_ids)
    record_attempt(
        instance, BATCH_KEY, AttemptRecord(1, submitted("batch_x"))
    )  # an older submission
    add(AttemptRecord(1, first.batches))
    record_attempt(
        instance,
        BATCH_KEY,
        AttemptRecord(3, submitted("batch_d"), retry_of=root, token_limit_waits=1),
    )
    add(AttemptRecord(2, submitted("batch_c"), retry_of=root))
    record_attempt(
        instance, BATCH_KEY, AttemptRecord(2, submitted("batch_z"), retry_of="another submission")
    )
    # Materializing the batch asset again reuses every batch: a copy, not a new submission.
    add(AttemptRecord(1, first.batches, reused_batches=2))

    history = Ledger(instance, BATCH_KEY).history(first)

    assert [attempt.number for attempt in history.attempts] == [1, 2, 3]
    assert [attempt.batch_ids for attempt in history.attempts] == [
        ["batch_a", "batch_b"],
        ["batch_c"],
        ["batch_d"],
    ]
    assert history.latest.token_limit_waits == 1
    created = [
        storage_id
        for storage_id, attempt in Ledger(instance, BATCH_KEY).attempts_after(0)
        if attempt is not None and attempt.batch_ids == first.batch_ids
    ]
    assert history.first_storage_id == created[0]


def test_cancel_requests_count_from_the_submission_on(instance: dg.DagsterInstance) -> None:
    add = partial(record_attempt, instance, BATCH_KEY)
    ledger = Ledger(instance, BATCH_KEY)
    ledger.record_cancel(CancelRequest(("batch_old",), "run-1"))
    add(AttemptRecord(1, submitted("batch_a")))
    history = ledger.history(submission("batch_a"))
    ledger.record_cancel(CancelRequest(("batch_a",), "run-2"))

    assert ledger.cancel_requested(history.first_storage_id) == {"batch_a"}
    assert ledger.cancel_requested(0) == {"batch_old", "batch_a"}
    [latest, *_] = instance.fetch_observations(BATCH_KEY, limit=10).records
    assert CancelRequest.from_record(latest) == CancelRequest(("batch_a",), "run-2")
