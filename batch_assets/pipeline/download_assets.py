"""`<name>_output` and `<name>_errors`: the batches' result files, downloaded and parsed.

One step, four parts: gather the attempts' batches from the ledger and the Batch API; decide
(`core/retry_decision`) whether to wait, fail, resubmit or finish; act on that; emit the frames.
"""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import polars as pl
from openai.types import Batch
from upath import UPath

from batch_assets.core import storage
from batch_assets.core.batch_client import TERMINAL_STATUSES, BatchClient
from batch_assets.core.costs import estimate_cost_usd
from batch_assets.core.output_parsing import (
    ANSWERED_STATUS,
    RESULT_SCHEMA,
    empty_results,
    parse_batch_file,
)
from batch_assets.core.records import Submission, SubmittedBatch
from batch_assets.core.request_cache import CACHED
from batch_assets.core.request_plan import apply_plan, read_plan, shard_url_keys
from batch_assets.core.requested_ids import requested_ids
from batch_assets.core.retry_decision import (
    AttemptState,
    ReadResults,
    Rejected,
    Resubmit,
    StillRunning,
    WaitForCapacity,
    await_batches,
    decide,
)
from batch_assets.core.retry_policy import merge_attempts, retryable
from batch_assets.pipeline.keys import (
    COST_KEY,
    OPENAI_CALLS_KEY,
    OPENAI_COMPLETION_TOKENS_KEY,
    OPENAI_PROMPT_TOKENS_KEY,
    OPENAI_TOTAL_TOKENS_KEY,
    submission_run_key,
)
from batch_assets.pipeline.ledger import Ledger, SubmissionHistory
from batch_assets.pipeline.pricing import (
    actual_metadata,
    cache_metadata,
    earlier_usage,
    usage_by_model,
)
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.retries import (
    cancelled_on_request,
    follow_up_materialization,
    submit_follow_up,
)
from batch_assets.pipeline.settings import token_limit_backoff_seconds
from batch_assets.pipeline.spec import PipelineSpec
from batch_assets.pipeline.table_metadata import frame_metadata, frame_preview

NOT_RETURNED_CODE = "not_returned"


@dataclass(frozen=True)
class CollectedResults:
    """Every line that came back for a submission's attempts, one row per custom_id."""

    batches: tuple[Batch, ...]
    output_files: tuple[str, ...]
    error_files: tuple[str, ...]
    output: pl.DataFrame  # the answered requests (HTTP 200)
    errors: pl.DataFrame  # every request that did not succeed


# Gather


def gather_states(client: BatchClient, history: SubmissionHistory) -> list[AttemptState]:
    """Each attempt's batches as the Batch API reports them now."""
    ids = {batch_id for attempt in history.attempts for batch_id in attempt.batch_ids}
    found = client.find_batches(ids) if ids else {}
    return [
        AttemptState(
            attempt.number,
            tuple(found[batch_id] for batch_id in attempt.batch_ids),
            attempt.token_limit_waits,
        )
        for attempt in history.attempts
    ]


def _downloaded_and_parsed(
    client: BatchClient, file_id: str, destination: UPath, batch_id: str
) -> tuple[str, pl.DataFrame]:
    """A result file, downloaded once (files never change, so an earlier run's copy is reused),
    and its lines parsed: a new download from its scratch copy, before it goes to the store."""
    if storage.exists(destination):
        with storage.local_copy(destination) as path:
            lines = parse_batch_file(path, batch_id=batch_id, name=destination.name)
        return storage.url_of(destination), lines
    with storage.atomic_path(destination) as scratch:
        with scratch.open("wb") as out:
            client.download_into(file_id, out)
        lines = parse_batch_file(scratch, batch_id=batch_id, name=destination.name)
    return storage.url_of(destination), lines


def _unreturned(
    submitted: Sequence[SubmittedBatch], batches: Sequence[Batch], returned: pl.DataFrame
) -> pl.DataFrame:
    """Requests that came back in neither file, as error lines."""
    missing = requested_ids(submitted).join(returned, on="custom_id", how="anti")
    statuses = {batch.id: batch.status for batch in batches}
    return missing.select(
        pl.col("custom_id"),
        pl.col("batch_id"),
        pl.lit(NOT_RETURNED_CODE).alias("error_code"),
        pl.format(
            "No output or error line came back (batch {}).",
            pl.col("batch_id").replace_strict(statuses, return_dtype=pl.String),
        ).alias("error_message"),
    )


def gather_results(
    client: BatchClient,
    spec: PipelineSpec,
    history: SubmissionHistory,
    states: Sequence[AttemptState],
) -> CollectedResults:
    """Every attempt's output and error files, downloaded and parsed, merged per custom_id."""
    output_files: list[str] = []
    error_files: list[str] = []
    per_attempt: list[pl.DataFrame] = []
    for attempt, state in zip(history.attempts, states, strict=True):
        frames: list[pl.DataFrame] = []
        for batch in state.batches:
            for file_id, kind, files in (
                (batch.output_file_id, "output", output_files),
                (batch.error_file_id, "errors", error_files),
            ):
                if file_id:
                    destination = spec.downloads_dir / f"{batch.id}_{kind}.jsonl"
                    url, lines = _downloaded_and_parsed(client, file_id, destination, batch.id)
                    files.append(url)
                    frames.append(lines)
        returned = pl.concat(frames) if frames else empty_results()
        unreturned = _unreturned(attempt.batches, state.batches, returned)
        if unreturned.height:
            returned = pl.concat([returned, unreturned], how="diagonal_relaxed").select(
                list(RESULT_SCHEMA)
            )
        per_attempt.append(returned)
    merged = merge_attempts(per_attempt)
    answered = (merged["status_code"] == ANSWERED_STATUS).fill_null(False)
    return CollectedResults(
        batches=tuple(batch for state in states for batch in state.batches),
        output_files=tuple(output_files),
        error_files=tuple(error_files),
        output=merged.filter(answered),
        errors=merged.filter(~answered),
    )


def retryable_ids(results: CollectedResults, *, cancel_requested: bool) -> set[str]:
    """The custom_ids whose last answer failed for a reason worth another try."""
    errors = results.errors
    return set(errors.filter(retryable(errors, cancel_requested=cancel_requested))["custom_id"])


# Act


def _validation_failure(rejected: Rejected) -> dg.Failure:
    """The Batch API's validation errors, as a failure that names the line."""
    errors = [
        {"batch_id": batch.id, **error.model_dump()}
        for batch in rejected.batches
        for error in (batch.errors.data if batch.errors and batch.errors.data else [])
    ]
    first = errors[0] if errors else {}
    where = f" on line {first['line']}" if first.get("line") else ""
    return dg.Failure(
        description=f"{len(rejected.batches)} batch(es) failed validation at the Batch API: "
        f"{first.get('code', 'unknown')}{where}: {first.get('message', 'no message')}",
        metadata={
            "validation_errors": dg.MetadataValue.json(errors),
            "failed_batch_ids": dg.MetadataValue.json([batch.id for batch in rejected.batches]),
        },
        allow_retries=False,
    )


def report_waiting(
    context: dg.AssetExecutionContext,
    spec: PipelineSpec,
    number: int,
    waiting: StillRunning | Rejected | WaitForCapacity,
) -> None:
    """Fail on a rejected submission; otherwise say what the sensor waits for."""
    if isinstance(waiting, Rejected):
        raise _validation_failure(waiting)
    outputs = f"{spec.output_key.to_user_string()} and {spec.errors_key.to_user_string()}"
    if isinstance(waiting, StillRunning):
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(waiting.statuses.items()))
        what = (
            f"{sum(waiting.statuses.values())} of {waiting.batch_count} batch(es) of attempt "
            f"{number} still running ({statuses})"
        )
    else:
        what = (
            f"attempt {number} hit the enqueued-token limit; capacity wait {waiting.waits} "
            f"ends at {time.strftime('%H:%M:%S', time.localtime(waiting.ready_at))}"
        )
    context.log.info(
        f"{what}; skipping {outputs}. batch_completion_sensor will materialize them when the "
        "batches end."
    )


def resubmit(
    context: dg.AssetExecutionContext,
    spec: PipelineSpec,
    resource: OpenAIBatchResource,
    history: SubmissionHistory,
    decision: Resubmit,
) -> None:
    """Submit the follow-up attempt and record it in the ledger; the sensor watches it."""
    folder = spec.run_dir(context.run.run_id) / "retry"
    follow_up = submit_follow_up(resource.client, spec, history.attempts[0], decision, folder)
    context.log_event(follow_up_materialization(spec, follow_up, resource.host))
    context.log.info(
        f"Resubmitted {len(decision.custom_ids)} request(s) because {decision.reason}, as "
        f"attempt {decision.attempt} (batches {follow_up.batch_ids}); batch_completion_sensor "
        f"will materialize {spec.output_key.to_user_string()} and "
        f"{spec.errors_key.to_user_string()} when they end."
    )


# Emit


def token_usage(batches: Sequence[Batch], output: pl.DataFrame) -> list[tuple[str, int, int]]:
    """(model, input tokens, output tokens) per batch: from `Batch.usage`, else the output lines."""
    usage: list[tuple[str, int, int]] = []
    for batch in batches:
        if batch.usage is not None:
            usage.append((batch.model or "", batch.usage.input_tokens, batch.usage.output_tokens))
            continue
        lines = output.filter(pl.col("batch_id") == batch.id)
        usage.append(
            (
                batch.model or str(lines["model"].drop_nulls().first() or ""),
                int(lines["input_tokens"].sum()),
                int(lines["output_tokens"].sum()),
            )
        )
    return usage


def usage_metadata(
    batches: Sequence[Batch], output: pl.DataFrame, spec: PipelineSpec
) -> dict[str, dg.MetadataValue]:
    """Token totals and the estimated cost at batch prices."""
    usage = token_usage(batches, output)
    input_tokens = sum(entry[1] for entry in usage)
    output_tokens = sum(entry[2] for entry in usage)
    costs = [estimate_cost_usd(model, i, o, spec.prices) for model, i, o in usage]
    known = [cost for cost in costs if cost is not None]
    metadata: dict[str, dg.MetadataValue] = {
        OPENAI_CALLS_KEY: dg.MetadataValue.int(output.height),
        OPENAI_PROMPT_TOKENS_KEY: dg.MetadataValue.int(input_tokens),
        OPENAI_COMPLETION_TOKENS_KEY: dg.MetadataValue.int(output_tokens),
        OPENAI_TOTAL_TOKENS_KEY: dg.MetadataValue.int(input_tokens + output_tokens),
        "usage_source": dg.MetadataValue.text(
            "batch usage" if all(b.usage is not None for b in batches) else "output lines"
        ),
    }
    if known:
        metadata[COST_KEY] = dg.MetadataValue.float(round(sum(known), 6))
    if len(known) < len(costs):
        metadata["cost_note"] = dg.MetadataValue.text(
            "Some models have no price in the pipeline's price table; their cost is left out."
        )
    return metadata


def store_answers(
    spec: PipelineSpec, submission: Submission, history: SubmissionHistory, output: pl.DataFrame
) -> int:
    """Put the submission's fresh answers into the request cache (not with `cache="off"`)."""
    plan = submission.plan
    if plan is None or plan.full_shards or not history.attempts[0].batches:
        return 0
    planned, _ = read_plan(plan)
    name = submission_run_key(history.attempts[0].batch_ids)
    return spec.request_cache(submission.host).store(output, planned, name)


def harvest_superseded(
    context: dg.AssetExecutionContext,
    client: BatchClient,
    spec: PipelineSpec,
    submission: Submission,
) -> None:
    """Store in the cache what the batches this submission cancelled (it replaced theirs)
    answered, once each, when they have ended: in the download run the sensor asks for when
    they end, if not in an earlier one."""
    cache = spec.request_cache(submission.host)
    pending = [
        batch
        for batch in submission.superseded
        if not storage.exists(cache.segment(f"superseded-{batch.batch_id}"))
    ]
    found = client.find_batches({batch.batch_id for batch in pending}) if pending else {}
    for submitted in pending:
        batch = found.get(submitted.batch_id)
        if batch is None or batch.status not in TERMINAL_STATUSES or not batch.output_file_id:
            continue
        destination = spec.downloads_dir / f"{batch.id}_output.jsonl"
        _, lines = _downloaded_and_parsed(client, batch.output_file_id, destination, batch.id)
        stored = cache.store(
            lines, shard_url_keys(submitted.shard_url, spec.endpoint), f"superseded-{batch.id}"
        )
        context.log.info(
            f"Stored {stored} answer(s) of superseded batch {batch.id} ({batch.status}) in the "
            "request cache."
        )


def emit(
    context: dg.AssetExecutionContext,
    spec: PipelineSpec,
    submission: Submission,
    history: SubmissionHistory,
    results: CollectedResults,
) -> Iterator[dg.Output[pl.DataFrame]]:
    """The output and errors frames (the cache's answers and the folded duplicates fanned out),
    each stored once by the pipeline's IO manager; the fresh answers go into the cache."""
    stored = store_answers(spec, submission, history, results.output)
    plan = submission.plan
    output, errors = apply_plan(plan, results.output, results.errors)
    statuses = Counter(batch.status for batch in results.batches)
    common: dict[str, dg.MetadataValue] = {
        "backend": dg.MetadataValue.text(submission.host),
        "batch_statuses": dg.MetadataValue.text(
            ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
        ),
        "batch_ids": dg.MetadataValue.json([batch.id for batch in results.batches]),
        "output_files": dg.MetadataValue.json(list(results.output_files)),
        "error_files": dg.MetadataValue.json(list(results.error_files)),
        "attempts": dg.MetadataValue.int(history.latest.number),
    }
    if plan is not None and not plan.full_shards:
        common.update(cache_metadata(plan))
        common["cache_stored"] = dg.MetadataValue.int(stored)
    total = output.height + errors.height
    codes = Counter(errors["error_code"].fill_null("").to_list())
    submitted = [batch for attempt in history.attempts for batch in attempt.batches]
    fresh = usage_by_model(results.output, submitted, plan)
    learned = fresh or earlier_usage(context.instance, spec)
    frames: dict[dg.AssetKey, tuple[pl.DataFrame, dict[str, dg.MetadataValue]]] = {
        spec.output_key: (
            output,
            {
                **usage_metadata(results.batches, results.output, spec),
                **actual_metadata(fresh, learned, plan, spec),
                **frame_preview(output, ["custom_id", "answer", "finish_reason", CACHED]),
            },
        ),
        spec.errors_key: (
            errors,
            {
                "error_rate": dg.MetadataValue.float(
                    round(errors.height / total, 6) if total else 0.0
                ),
                "error_codes": dg.MetadataValue.json(dict(sorted(codes.items()))),
            },
        ),
    }
    for key, (frame, metadata) in frames.items():
        if key in context.selected_asset_keys:
            yield dg.Output(
                frame,
                output_name=key.path[-1],
                metadata={**common, **frame_metadata(frame), **metadata},
            )


def build_download_assets(spec: PipelineSpec) -> dg.AssetsDefinition:
    """Output and errors, materialized once every batch of the submission has ended."""

    def out(key: dg.AssetKey, description: str) -> dg.AssetOut:
        return dg.AssetOut(
            key=key,
            description=description,
            is_required=False,
            group_name=spec.group_name,
            io_manager_key=spec.io_manager_key,
            kinds=spec.kinds("openai", "parquet"),
            tags=spec.tags(spec.download_role),
            owners=spec.owners,
        )

    @dg.multi_asset(
        name=f"{spec.name}_download",
        outs={
            spec.output_key.path[-1]: out(
                spec.output_key,
                "Every successful answer, one row per custom_id (Parquet); the raw output files "
                "are listed in the metadata. Materialized by batch_completion_sensor when the "
                "batches end.",
            ),
            spec.errors_key.path[-1]: out(
                spec.errors_key,
                "Every request that did not succeed, with its error code and message: HTTP "
                "errors, expired, cancelled and unreturned requests.",
            ),
        },
        ins={"submission": dg.AssetIn(spec.batch_key)},
        can_subset=True,
        required_resource_keys={spec.resource_key},
        pool=spec.pool,
        partitions_def=spec.partitions_def,
    )
    def download(
        context: dg.AssetExecutionContext, submission: Submission
    ) -> Iterator[dg.Output[pl.DataFrame]]:
        resource: OpenAIBatchResource = getattr(context.resources, spec.resource_key)
        ledger = Ledger(context.instance, spec.batch_key)
        history = ledger.history(
            submission, context.partition_key if context.has_partition_key else None
        )
        states = gather_states(resource.client, history)
        if submission.superseded and spec.cache_mode != "off":
            spec.prepare_storage(context.log.info)
            harvest_superseded(context, resource.client, spec, submission)
        backoff = token_limit_backoff_seconds()
        waiting = await_batches(states[-1], now=time.time(), base_backoff=backoff)
        if not isinstance(waiting, ReadResults):
            report_waiting(context, spec, history.latest.number, waiting)
            return
        spec.prepare_storage(context.log.info)
        results = gather_results(resource.client, spec, history, states)
        cancelled = cancelled_on_request(
            ledger.cancel_requested(history.first_storage_id), history.latest
        )
        decision = decide(
            states,
            retryable_ids(results, cancel_requested=cancelled),
            max_attempts=spec.max_attempts,
            now=time.time(),
            base_backoff=backoff,
        )
        if isinstance(decision, Resubmit):
            resubmit(context, spec, resource, history, decision)
            return
        yield from emit(context, spec, submission, history, results)

    return download
