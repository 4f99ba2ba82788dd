"""The completion sensor: watches every submitted batch of the pipelines on one Batch API resource
and asks for one download run per attempt whose batches have ended."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
from openai.types import Batch

from batch_assets.core.retry_decision import (
    AttemptState,
    StillRunning,
    WaitForCapacity,
    await_batches,
)
from batch_assets.pipeline.keys import (
    DEFAULT_RESOURCE_KEY,
    DOWNLOAD_ROLE,
    PIPELINE_TAG,
    RESOURCE_TAG,
    ROLE_TAG,
    RUN_KEY_TAG,
    SUBMISSION_ROLE,
)
from batch_assets.pipeline.ledger import Ledger
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sensor_cursor import PendingAttempt, Progress, SensorCursor
from batch_assets.pipeline.settings import sensor_interval_seconds, token_limit_backoff_seconds

RUN_KEYS_PER_QUERY = 500
SENSOR_NAME = "batch_completion_sensor"


@dataclass(frozen=True)
class WatchedPipeline:
    """A pipeline's submission asset and the assets its download run materializes."""

    name: str
    submission_key: dg.AssetKey
    download_keys: tuple[dg.AssetKey, ...]


def watched_pipelines(
    repository: dg.RepositoryDefinition, resource_key: str = DEFAULT_RESOURCE_KEY
) -> list[WatchedPipeline]:
    """The pipelines on `resource_key`, found by the tags the factory puts on their assets."""
    submissions: dict[str, dg.AssetKey] = {}
    downloads: dict[str, list[dg.AssetKey]] = {}
    for assets_def in repository.assets_defs_by_key.values():
        for spec in assets_def.specs:
            pipeline = spec.tags.get(PIPELINE_TAG)
            if pipeline is None or spec.tags.get(RESOURCE_TAG) != resource_key:
                continue
            role = spec.tags.get(ROLE_TAG)
            if role == SUBMISSION_ROLE:
                submissions[pipeline] = spec.key
            elif role == DOWNLOAD_ROLE and spec.key not in downloads.setdefault(pipeline, []):
                downloads[pipeline].append(spec.key)
    return [
        WatchedPipeline(name, key, tuple(sorted(downloads.get(name, []))))
        for name, key in sorted(submissions.items())
    ]


def requested_run_keys(instance: dg.DagsterInstance, run_keys: Sequence[str]) -> set[str]:
    """Those of `run_keys` that some run already carries, as the daemon tags them."""
    found: set[str] = set()
    for start in range(0, len(run_keys), RUN_KEYS_PER_QUERY):
        chunk = list(run_keys[start : start + RUN_KEYS_PER_QUERY])
        for run in instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: chunk})):
            found.add(run.tags[RUN_KEY_TAG])
    return found


def read_new_attempts(
    instance: dg.DagsterInstance, pipelines: Iterable[WatchedPipeline], cursor: SensorCursor
) -> None:
    """Add attempts recorded since the cursor, and not yet downloaded, to the pending."""
    newest = cursor.after
    found: dict[str, PendingAttempt] = {}
    for pipeline in pipelines:
        # Read to the end: a cap per pipeline would let another pipeline's newer records move
        # the shared cursor past the ones left unread.
        for storage_id, attempt in Ledger(instance, pipeline.submission_key).attempts_after(
            cursor.after
        ):
            newest = max(newest, storage_id)
            if attempt is None or not attempt.batches:
                continue
            found[attempt.run_key] = PendingAttempt(
                pipeline.name,
                attempt.batch_ids,
                attempt.token_limit_waits,
                attempt.number,
                partition=attempt.partition,
            )
    # After a lost cursor, attempts whose download run already exists are history, not work:
    # skipping them keeps the tick from looking up every batch ever submitted.
    for run_key in requested_run_keys(instance, list(found)):
        del found[run_key]
    cursor.pending.update(found)
    cursor.after = newest


def progress_of(batches: Sequence[Batch]) -> Progress:
    """Request counts and statuses summed over an attempt's batches."""
    counts = [batch.request_counts for batch in batches if batch.request_counts]
    return Progress(
        total=sum(count.total for count in counts),
        completed=sum(count.completed for count in counts),
        failed=sum(count.failed for count in counts),
        statuses=tuple(sorted({batch.status for batch in batches})),
    )


def progress_observation(
    pipeline: WatchedPipeline, entry: PendingAttempt, progress: Progress
) -> dg.AssetObservation:
    """Progress as an observation of `<name>_batch`, which the asset page plots."""
    return dg.AssetObservation(
        asset_key=pipeline.submission_key,
        partition=entry.partition,
        metadata={
            "total": dg.MetadataValue.int(progress.total),
            "completed": dg.MetadataValue.int(progress.completed),
            "failed": dg.MetadataValue.int(progress.failed),
            "statuses": dg.MetadataValue.text(", ".join(progress.statuses)),
            "batch_ids": dg.MetadataValue.json(entry.batch_ids),
        },
    )


def evaluate(
    instance: dg.DagsterInstance,
    repository: dg.RepositoryDefinition,
    resource: OpenAIBatchResource,
    resource_key: str,
    raw_cursor: str | None,
    now: float,
) -> dg.SensorResult:
    """One tick: record progress, and ask for the download of each attempt that has ended."""
    pipelines = {
        pipeline.name: pipeline for pipeline in watched_pipelines(repository, resource_key)
    }
    cursor = SensorCursor.load(raw_cursor)
    read_new_attempts(instance, pipelines.values(), cursor)
    if not cursor.pending:
        return dg.SensorResult(skip_reason="No batches in flight.", cursor=cursor.dump())
    all_ids = {batch_id for entry in cursor.pending.values() for batch_id in entry.batch_ids}
    batches = resource.client.find_batches(all_ids)
    run_requests: list[dg.RunRequest] = []
    observations: list[dg.AssetObservation] = []
    for run_key, entry in list(cursor.pending.items()):
        pipeline = pipelines.get(entry.pipeline)
        if pipeline is None:
            del cursor.pending[run_key]
            continue
        states = tuple(batches[batch_id] for batch_id in entry.batch_ids)
        progress = progress_of(states)
        if progress != entry.progress:
            entry.progress = progress
            observations.append(progress_observation(pipeline, entry, progress))
        attempt = AttemptState(entry.number, states, entry.token_limit_waits)
        ready = await_batches(attempt, now=now, base_backoff=token_limit_backoff_seconds())
        if isinstance(ready, StillRunning | WaitForCapacity):
            continue
        run_requests.append(
            dg.RunRequest(
                run_key=run_key,
                asset_selection=list(pipeline.download_keys),
                tags={PIPELINE_TAG: pipeline.name},
                partition_key=entry.partition,
            )
        )
        del cursor.pending[run_key]
    return dg.SensorResult(
        run_requests=run_requests,
        asset_events=observations,
        cursor=cursor.dump(),
        skip_reason=None if run_requests or observations else "No batch changed since last tick.",
    )


@functools.cache
def completion_sensor(resource_key: str) -> dg.SensorDefinition:
    """The sensor of the pipelines on `resource_key`: one per resource, shared by its pipelines.

    It is `batch_completion_sensor` for the default resource, `batch_completion_sensor_<key>`
    for any other.
    """
    suffix = "" if resource_key == DEFAULT_RESOURCE_KEY else f"_{resource_key}"

    @dg.sensor(
        name=f"{SENSOR_NAME}{suffix}",
        description=f"Watches every batch submitted through `{resource_key}`; when an attempt "
        "has ended, materializes its pipeline's output, errors and results.",
        minimum_interval_seconds=sensor_interval_seconds(),
        target=dg.AssetSelection.tag(ROLE_TAG, DOWNLOAD_ROLE)
        & dg.AssetSelection.tag(RESOURCE_TAG, resource_key),
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={resource_key},
    )
    def sensor(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult:
        # Invoked directly (in tests), Dagster passes the resources as keywords too.
        if context.repository_def is None:
            raise dg.DagsterInvariantViolationError(f"{context.sensor_name} needs its definitions")
        return evaluate(
            context.instance,
            context.repository_def,
            getattr(context.resources, resource_key),
            resource_key,
            context.cursor,
            time.time(),
        )

    return sensor


batch_completion_sensor = completion_sensor(DEFAULT_RESOURCE_KEY)
