"""Follow-up attempts: the requests a retry decision names, sharded and submitted again."""

from __future__ import annotations

from collections.abc import Set

import dagster as dg
from upath import UPath

from batch_assets.core.batch_client import BatchClient
from batch_assets.core.retry_decision import Resubmit
from batch_assets.core.retry_policy import request_lines
from batch_assets.core.sharding import shard_request_lines
from batch_assets.pipeline.keys import ATTEMPT_KEY, RETRY_OF_KEY
from batch_assets.pipeline.ledger import AttemptRecord
from batch_assets.pipeline.spec import PipelineSpec
from batch_assets.pipeline.submission import partition_salt, submit_shards


def submit_follow_up(
    client: BatchClient,
    spec: PipelineSpec,
    first: AttemptRecord,
    resubmit: Resubmit,
    folder: UPath,
) -> AttemptRecord:
    """Shard the original lines of the ids to resubmit and submit them, reusing what was made."""
    lines = request_lines([batch.shard_url for batch in first.batches], set(resubmit.custom_ids))
    shards = shard_request_lines(lines, folder, endpoint=spec.endpoint, limits=spec.limits)
    made = submit_shards(
        client,
        spec,
        shards,
        metadata={RETRY_OF_KEY: first.submission_key, ATTEMPT_KEY: str(resubmit.attempt)},
        key_salt=partition_salt(first.partition) + f"attempt {resubmit.attempt}",
    )
    return AttemptRecord(
        number=resubmit.attempt,
        batches=made.batches,
        retry_of=first.submission_key,
        token_limit_waits=resubmit.token_limit_waits,
        reused_batches=len(made.reused_batches),
        reused_uploads=len(made.reused_uploads),
        partition=first.partition,
    )


def follow_up_materialization(
    spec: PipelineSpec, follow_up: AttemptRecord, host: str
) -> dg.AssetMaterialization:
    """A follow-up, recorded in the ledger as a materialization of `<name>_batch`."""
    return dg.AssetMaterialization(
        asset_key=spec.batch_key,
        partition=follow_up.partition,
        description=f"Attempt {follow_up.number}: resubmitted requests that failed for a "
        "retryable reason.",
        metadata={**follow_up.to_metadata(), "backend": dg.MetadataValue.text(host)},
    )


def cancelled_on_request(requested: Set[str], latest: AttemptRecord) -> bool:
    """Whether someone asked to cancel a batch of the latest attempt."""
    return bool(requested & set(latest.batch_ids))
