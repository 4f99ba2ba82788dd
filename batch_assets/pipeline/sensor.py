"""One sensor that watches every submitted batch of every pipeline and asks for the download."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import dagster as dg

from batch_assets.core.batch_client import TERMINAL_STATUSES
from batch_assets.core.retry_policy import hit_token_limit
from batch_assets.pipeline.event_log import records_after
from batch_assets.pipeline.keys import (
    BACKOFF_VARIABLE,
    DOWNLOAD_ROLE,
    INTERVAL_VARIABLE,
    PIPELINE_TAG,
    ROLE_TAG,
    RUN_KEY_TAG,
    SUBMISSION_ROLE,
    submission_run_key,
)
from batch_assets.pipeline.resource import OpenAIBatchResource

RUN_KEYS_PER_QUERY = 500
MAX_BACKOFF_SECONDS = 900.0


def token_limit_backoff_seconds(waits: int) -> float:
    """How long to wait before resubmitting after `waits` token-limit failures in a row."""
    base = float(os.environ.get(BACKOFF_VARIABLE, "60"))
    return min(base * 2 ** max(waits - 1, 0), MAX_BACKOFF_SECONDS)


@dataclass(frozen=True)
class WatchedPipeline:
    """A pipeline's submission asset and the assets its download run materializes."""

    name: str
    submission_key: dg.AssetKey
    download_keys: tuple[dg.AssetKey, ...]


def watched_pipelines(repository: dg.RepositoryDefinition) -> list[WatchedPipeline]:
    """Every pipeline in the code location, found by the tags the factory puts on its assets."""
    submissions: dict[str, dg.AssetKey] = {}
    downloads: dict[str, list[dg.AssetKey]] = {}
    for assets_def in repository.assets_defs_by_key.values():
        for spec in assets_def.specs:
            pipeline = spec.tags.get(PIPELINE_TAG)
            if pipeline is None:
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


def _load_cursor(raw: str | None) -> dict[str, Any]:
    cursor = json.loads(raw) if raw else {}
    cursor.setdefault("after", 0)
    cursor.setdefault("pending", {})
    return cursor


def _requested_run_keys(instance: dg.DagsterInstance, run_keys: list[str]) -> set[str]:
    """Those of `run_keys` that some run already carries, as the daemon tags them."""
    found: set[str] = set()
    for start in range(0, len(run_keys), RUN_KEYS_PER_QUERY):
        chunk = run_keys[start : start + RUN_KEYS_PER_QUERY]
        for run in instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: chunk})):
            found.add(run.tags[RUN_KEY_TAG])
    return found


def _read_new_submissions(
    context: dg.SensorEvaluationContext, pipelines: list[WatchedPipeline], cursor: dict[str, Any]
) -> None:
    """Add submissions materialized since the cursor, and not yet downloaded, to the pending."""
    newest = cursor["after"]
    found: dict[str, dict[str, Any]] = {}
    for pipeline in pipelines:
        # Read to the end: a cap per pipeline would let another pipeline's newer records move
        # the shared cursor past the ones left unread.
        for record in records_after(
            context.instance.fetch_materializations, pipeline.submission_key, cursor["after"]
        ):
            newest = max(newest, record.storage_id)
            materialization = record.asset_materialization
            if materialization is None or "batch_ids" not in materialization.metadata:
                continue
            batch_ids = list(materialization.metadata["batch_ids"].value)  # type: ignore[arg-type]
            if not batch_ids:
                continue
            waits = materialization.metadata.get("token_limit_waits")
            found[submission_run_key(batch_ids)] = {
                "pipeline": pipeline.name,
                "batch_ids": batch_ids,
                "progress": None,
                "token_limit_waits": int(waits.value) if waits is not None else 0,  # type: ignore[arg-type]
            }
    # After a lost cursor, submissions whose download run already exists are history, not work:
    # skipping them keeps the tick from looking up every batch ever submitted.
    for run_key in _requested_run_keys(context.instance, list(found)):
        del found[run_key]
    cursor["pending"].update(found)
    cursor["after"] = newest


@dg.sensor(
    name="batch_completion_sensor",
    description="Watches every submitted batch; when a submission has ended, materializes its "
    "output, errors and results.",
    minimum_interval_seconds=int(os.environ.get(INTERVAL_VARIABLE, "30")),
    target=dg.AssetSelection.tag(ROLE_TAG, DOWNLOAD_ROLE),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def batch_completion_sensor(
    context: dg.SensorEvaluationContext, openai_batch: OpenAIBatchResource
) -> dg.SensorResult | dg.SkipReason:
    """Record progress of batches in flight and ask for one download run per ended submission."""
    pipelines = {pipeline.name: pipeline for pipeline in watched_pipelines(context.repository_def)}
    cursor = _load_cursor(context.cursor)
    _read_new_submissions(context, list(pipelines.values()), cursor)
    pending: dict[str, dict[str, Any]] = cursor["pending"]
    if not pending:
        return dg.SensorResult(skip_reason="No batches in flight.", cursor=json.dumps(cursor))

    all_ids = {batch_id for entry in pending.values() for batch_id in entry["batch_ids"]}
    batches = openai_batch.client.find_batches(all_ids)
    run_requests: list[dg.RunRequest] = []
    observations: list[dg.AssetObservation] = []
    for run_key, entry in list(pending.items()):
        pipeline = pipelines.get(entry["pipeline"])
        if pipeline is None:
            del pending[run_key]
            continue
        states = [batches[batch_id] for batch_id in entry["batch_ids"]]
        progress = {
            "total": sum(b.request_counts.total for b in states if b.request_counts),
            "completed": sum(b.request_counts.completed for b in states if b.request_counts),
            "failed": sum(b.request_counts.failed for b in states if b.request_counts),
            "statuses": sorted({b.status for b in states}),
        }
        if progress != entry["progress"]:
            entry["progress"] = progress
            observations.append(
                dg.AssetObservation(
                    asset_key=pipeline.submission_key,
                    metadata={
                        "total": dg.MetadataValue.int(progress["total"]),
                        "completed": dg.MetadataValue.int(progress["completed"]),
                        "failed": dg.MetadataValue.int(progress["failed"]),
                        "statuses": dg.MetadataValue.text(", ".join(progress["statuses"])),
                        "batch_ids": dg.MetadataValue.json(entry["batch_ids"]),
                    },
                )
            )
        if all(batch.status in TERMINAL_STATUSES for batch in states):
            limited = [batch for batch in states if hit_token_limit(batch)]
            if limited:
                # Capacity frees only as other batches finish: wait before the download run
                # resubmits, longer after each failure in a row.
                waits = entry.get("token_limit_waits", 0) + 1
                ready_at = max(batch.failed_at or 0 for batch in limited)
                if time.time() < ready_at + token_limit_backoff_seconds(waits):
                    continue
            run_requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    asset_selection=list(pipeline.download_keys),
                    tags={PIPELINE_TAG: pipeline.name},
                )
            )
            del pending[run_key]
    return dg.SensorResult(
        run_requests=run_requests,
        asset_events=observations,
        cursor=json.dumps(cursor),
        skip_reason=None if run_requests or observations else "No batch changed since last tick.",
    )
