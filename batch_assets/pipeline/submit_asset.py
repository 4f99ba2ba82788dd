"""`<name>_batch`: upload each shard and create its batch, then return at once."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
from openai.types import FileObject

from batch_assets.core.batch_client import BatchClient
from batch_assets.core.records import Submission, SubmittedBatch
from batch_assets.core.sharding import Shard
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.spec import PipelineSpec

PIPELINE_METADATA_KEY = "batch_assets_pipeline"
SHARD_KEY_METADATA_KEY = "batch_assets_shard_key"
SHARD_METADATA_KEY = "batch_assets_shard"
UPLOAD_WORKERS = 4
NOT_REUSABLE = frozenset({"failed", "expired", "cancelled", "cancelling"})


def shard_key(pipeline: str, endpoint: str, shard: Shard) -> str:
    """A fixed key for a shard's content, endpoint and pipeline: the same shard, the same key."""
    return hashlib.sha256(f"{pipeline}\n{endpoint}\n{shard.sha256}".encode()).hexdigest()[:32]


def upload_filename(key: str) -> str:
    """The name a shard is uploaded under, so that an orphaned upload can be found again."""
    return f"{key}.jsonl"


def _submit_shard(
    client: BatchClient,
    spec: PipelineSpec,
    shard: Shard,
    key: str,
    position: str,
    uploaded: FileObject | None,
) -> SubmittedBatch:
    if uploaded is None:
        uploaded = client.upload(shard.path, upload_filename(key))
    batch = client.create(
        uploaded.id,
        endpoint=spec.endpoint,
        completion_window=spec.completion_window,
        metadata={
            **spec.metadata,
            PIPELINE_METADATA_KEY: spec.name,
            SHARD_KEY_METADATA_KEY: key,
            SHARD_METADATA_KEY: position,
        },
    )
    return SubmittedBatch(batch.id, uploaded.id, key, shard.path, shard.n_requests, shard.model)


def build_submit_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """The asset whose materialization means "submitted": the sensor waits for the batches."""

    @dg.asset(
        name=spec.batch_key.path[-1],
        ins={"shards": dg.AssetIn(spec.requests_key)},
        group_name=spec.group_name,
        kinds={"openai"},
        tags=spec.tags(spec.submission_role),
        required_resource_keys={spec.resource_key},
        description=f"Uploads each request shard and creates its batch on {spec.endpoint} "
        f"(completion window {spec.completion_window}); returns once submitted. "
        "A shard already submitted (same content, endpoint and pipeline) is not submitted again.",
    )
    def batch_asset(context: dg.AssetExecutionContext, shards: list[Shard]) -> dg.Output:
        resource: OpenAIBatchResource = getattr(context.resources, spec.resource_key)
        client = resource.client
        keys = [shard_key(spec.name, spec.endpoint, shard) for shard in shards]
        existing = {
            key: batch
            for key, batch in client.find_by_metadata(SHARD_KEY_METADATA_KEY, set(keys)).items()
            if batch.status not in NOT_REUSABLE
        }
        submitted: dict[int, SubmittedBatch] = {}
        for index, (shard, key) in enumerate(zip(shards, keys, strict=True)):
            if key in existing:
                batch = existing[key]
                context.log.info(
                    f"Shard {index + 1}/{len(shards)} was already submitted as {batch.id} "
                    f"({batch.status}); reusing it."
                )
                submitted[index] = SubmittedBatch(
                    batch.id, batch.input_file_id, key, shard.path, shard.n_requests, shard.model
                )
        todo = [index for index in range(len(shards)) if index not in submitted]
        orphans = client.find_files({upload_filename(keys[index]) for index in todo})
        reused_uploads: dict[int, FileObject] = {}
        for index in todo:
            orphan = orphans.get(upload_filename(keys[index]))
            if orphan is not None and orphan.bytes == shards[index].n_bytes:
                reused_uploads[index] = orphan
                context.log.info(
                    f"Shard {index + 1}/{len(shards)} was already uploaded as {orphan.id}; "
                    "reusing the file."
                )
        with ThreadPoolExecutor(max_workers=max(1, min(UPLOAD_WORKERS, len(todo)))) as pool:
            futures = {
                index: pool.submit(
                    _submit_shard,
                    client,
                    spec,
                    shards[index],
                    keys[index],
                    f"{index + 1}/{len(shards)}",
                    reused_uploads.get(index),
                )
                for index in todo
            }
            for index, future in futures.items():
                submitted[index] = future.result()
                context.log.info(
                    f"Shard {index + 1}/{len(shards)}: created batch {submitted[index].batch_id} "
                    f"on file {submitted[index].input_file_id}"
                )
        submission = Submission(
            pipeline=spec.name,
            endpoint=spec.endpoint,
            host=resource.host,
            batches=tuple(submitted[index] for index in range(len(shards))),
        )
        statuses = Counter(
            existing[key].status if key in existing else "validating" for key in keys
        )
        return dg.Output(
            submission,
            metadata={
                "batch_ids": dg.MetadataValue.json(submission.batch_ids),
                "input_file_ids": dg.MetadataValue.json(
                    [batch.input_file_id for batch in submission.batches]
                ),
                "batch_count": dg.MetadataValue.int(len(submission.batches)),
                "request_count": dg.MetadataValue.int(sum(s.n_requests for s in shards)),
                "reused_batches": dg.MetadataValue.int(len(existing)),
                "reused_uploads": dg.MetadataValue.int(len(reused_uploads)),
                "status": dg.MetadataValue.text(
                    ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
                ),
                "backend": dg.MetadataValue.text(resource.host),
                "endpoint": dg.MetadataValue.text(spec.endpoint),
            },
        )

    return batch_asset
