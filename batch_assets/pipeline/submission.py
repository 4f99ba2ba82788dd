"""Submit shards once: reuse a batch or an upload already made for the same shard key."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from openai.types import Batch, FileObject

from batch_assets.core.batch_client import BatchClient
from batch_assets.core.records import SubmittedBatch
from batch_assets.core.sharding import Shard
from batch_assets.pipeline.keys import (
    PIPELINE_METADATA_KEY,
    SHARD_KEY_METADATA_KEY,
    SHARD_METADATA_KEY,
)
from batch_assets.pipeline.spec import PipelineSpec

UPLOAD_WORKERS = 4
NOT_REUSABLE = frozenset({"failed", "expired", "cancelled", "cancelling"})


def shard_key(pipeline: str, endpoint: str, shard: Shard, salt: str = "") -> str:
    """A fixed key for a shard's content, endpoint and pipeline: the same shard, the same key."""
    text = f"{pipeline}\n{endpoint}\n{shard.sha256}" + (f"\n{salt}" if salt else "")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def partition_salt(partition: str | None) -> str:
    """What sets a partition's shard keys apart: two partitions never share a batch, so each
    has its own download run."""
    return "" if partition is None else f"partition {partition}\n"


def upload_filename(key: str) -> str:
    """The name a shard is uploaded under, so that an orphaned upload can be found again."""
    return f"{key}.jsonl"


@dataclass(frozen=True)
class SubmittedShards:
    """The batches for a list of shards, and what was reused rather than made."""

    batches: tuple[SubmittedBatch, ...]
    reused_batches: dict[int, Batch]
    reused_uploads: dict[int, FileObject]


def submit_shards(
    client: BatchClient,
    spec: PipelineSpec,
    shards: Sequence[Shard],
    *,
    metadata: Mapping[str, str] = {},
    key_salt: str = "",
    completed_after: float | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> SubmittedShards:
    """Upload and create a batch per shard, concurrently; nothing is made twice for one key.

    A batch that completed is reused only if it was created after `completed_after` (a Unix
    time), when given: its answers are older than the cache allows.
    """
    if not shards:
        return SubmittedShards((), {}, {})
    keys = [shard_key(spec.name, spec.endpoint, shard, key_salt) for shard in shards]
    found = client.find_by_metadata(SHARD_KEY_METADATA_KEY, set(keys))
    submitted: dict[int, SubmittedBatch] = {}
    reused_batches: dict[int, Batch] = {}
    for index, (shard, key) in enumerate(zip(shards, keys, strict=True)):
        batch = found.get(key)
        too_old = (
            batch is not None
            and completed_after is not None
            and batch.status == "completed"
            and batch.created_at < completed_after
        )
        if batch is not None and batch.status not in NOT_REUSABLE and not too_old:
            reused_batches[index] = batch
            log(
                f"Shard {index + 1}/{len(shards)} was already submitted as {batch.id} "
                f"({batch.status}); reusing it."
            )
            submitted[index] = SubmittedBatch(
                batch.id, batch.input_file_id, key, shard.url, shard.n_requests, shard.model
            )
    todo = [index for index in range(len(shards)) if index not in submitted]
    orphans = client.find_files({upload_filename(keys[index]) for index in todo}) if todo else {}
    reused_uploads: dict[int, FileObject] = {}
    for index in todo:
        orphan = orphans.get(upload_filename(keys[index]))
        if orphan is not None and orphan.bytes == shards[index].n_bytes:
            reused_uploads[index] = orphan
            log(
                f"Shard {index + 1}/{len(shards)} was already uploaded as {orphan.id}; "
                "reusing the file."
            )

    def submit_one(index: int) -> SubmittedBatch:
        shard, key = shards[index], keys[index]
        uploaded = reused_uploads.get(index) or client.upload(shard.url, upload_filename(key))
        batch = client.create(
            uploaded.id,
            endpoint=spec.endpoint,
            completion_window=spec.completion_window,
            metadata={
                **spec.metadata,
                **metadata,
                PIPELINE_METADATA_KEY: spec.name,
                SHARD_KEY_METADATA_KEY: key,
                SHARD_METADATA_KEY: f"{index + 1}/{len(shards)}",
            },
        )
        return SubmittedBatch(batch.id, uploaded.id, key, shard.url, shard.n_requests, shard.model)

    with ThreadPoolExecutor(max_workers=max(1, min(UPLOAD_WORKERS, len(todo)))) as pool:
        for index, made in zip(todo, pool.map(submit_one, todo), strict=True):
            submitted[index] = made
            log(
                f"Shard {index + 1}/{len(shards)}: created batch {made.batch_id} "
                f"on file {made.input_file_id}"
            )
    return SubmittedShards(
        tuple(submitted[index] for index in range(len(shards))), reused_batches, reused_uploads
    )
