"""Follow-up batches for requests that failed for reasons worth another try."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from upath import UPath

from batch_assets.core.batch_client import BatchClient
from batch_assets.core.records import Submission, SubmittedBatch
from batch_assets.core.retry_policy import request_lines
from batch_assets.core.sharding import shard_request_lines
from batch_assets.pipeline.event_log import records_after, records_newest_first
from batch_assets.pipeline.keys import ATTEMPT_KEY, RETRY_OF_KEY, submission_run_key
from batch_assets.pipeline.spec import PipelineSpec
from batch_assets.pipeline.submission import submit_shards


@dataclass(frozen=True)
class Attempt:
    """One round of batches for a submission: the first, or a follow-up."""

    number: int
    submission: Submission
    token_limit_waits: int = 0


def submission_key(submission: Submission) -> str:
    """The key that ties follow-ups to the first submission."""
    return submission_run_key(submission.batch_ids)


def recorded_attempts(
    instance: dg.DagsterInstance, spec: PipelineSpec, first: Submission
) -> tuple[list[Attempt], int]:
    """The first submission and its follow-ups, in order, and the storage id of the
    materialization that created the first submission's batches (0 if it is gone): nothing
    of the submission is older.
    """
    root = submission_key(first)
    follow_ups: dict[int, Attempt] = {}
    since = 0
    for record in records_newest_first(instance.fetch_materializations, spec.batch_key):
        materialization = record.asset_materialization
        if materialization is None:
            continue
        metadata = {name: value.value for name, value in materialization.metadata.items()}
        if metadata.get("retry_of") is None:
            batch_ids = list(metadata.get("batch_ids") or [])  # type: ignore[call-overload]
            if submission_run_key(batch_ids) == root:
                since = record.storage_id
                # A materialization that reused every batch is a later copy: read on to the
                # one that created them, and the follow-ups recorded in between.
                if int(metadata.get("reused_batches", 0)) < len(batch_ids):  # type: ignore[call-overload]
                    break
            continue
        if metadata["retry_of"] != root:
            continue
        batches = tuple(
            SubmittedBatch(batch_id, file_id, key, url, count, model)
            for batch_id, file_id, key, url, count, model in metadata["retry_batches"]  # type: ignore[union-attr]
        )
        number = int(metadata["attempt"])  # type: ignore[arg-type]
        follow_ups.setdefault(
            number,
            Attempt(
                number,
                Submission(first.pipeline, first.endpoint, first.host, batches),
                int(metadata.get("token_limit_waits", 0)),  # type: ignore[arg-type]
            ),
        )
    return [Attempt(1, first)] + [follow_ups[number] for number in sorted(follow_ups)], since


def submit_follow_up(
    client: BatchClient,
    spec: PipelineSpec,
    first: Submission,
    retry_ids: set[str],
    attempt: int,
    folder: UPath,
) -> Submission:
    """Shard the original lines of `retry_ids` and submit them, reusing what was already made."""
    lines = request_lines([batch.shard_url for batch in first.batches], retry_ids)
    shards = shard_request_lines(lines, folder, endpoint=spec.endpoint, limits=spec.limits)
    made = submit_shards(
        client,
        spec,
        shards,
        metadata={RETRY_OF_KEY: submission_key(first), ATTEMPT_KEY: str(attempt)},
        key_salt=f"attempt {attempt}",
    )
    return Submission(first.pipeline, first.endpoint, first.host, made.batches)


def follow_up_materialization(
    spec: PipelineSpec,
    first: Submission,
    follow_up: Submission,
    attempt: int,
    host: str,
    token_limit_waits: int,
) -> dg.AssetMaterialization:
    """Record a follow-up as a materialization of `<name>_batch`, which the sensor watches."""
    return dg.AssetMaterialization(
        asset_key=spec.batch_key,
        description=f"Attempt {attempt}: resubmitted requests that failed for a retryable reason.",
        metadata={
            "batch_ids": dg.MetadataValue.json(follow_up.batch_ids),
            "retry_of": dg.MetadataValue.text(submission_key(first)),
            "attempt": dg.MetadataValue.int(attempt),
            "token_limit_waits": dg.MetadataValue.int(token_limit_waits),
            "retried_requests": dg.MetadataValue.int(
                sum(batch.request_count for batch in follow_up.batches)
            ),
            "retry_batches": dg.MetadataValue.json(
                [
                    [
                        b.batch_id,
                        b.input_file_id,
                        b.shard_key,
                        b.shard_url,
                        b.request_count,
                        b.model,
                    ]
                    for b in follow_up.batches
                ]
            ),
            "backend": dg.MetadataValue.text(host),
        },
    )


def cancel_requested_ids(
    instance: dg.DagsterInstance, spec: PipelineSpec, since_storage_id: int = 0
) -> set[str]:
    """Batch ids that `<name>_cancel_job` asked to cancel after `since_storage_id`."""
    requested: set[str] = set()
    for record in records_after(instance.fetch_observations, spec.batch_key, since_storage_id):
        observation = record.asset_observation
        if observation is not None and "cancel_requested" in observation.metadata:
            requested.update(observation.metadata["cancel_requested"].value)  # type: ignore[arg-type]
    return requested
