"""`<name>_output` and `<name>_errors`: the batches' result files, downloaded and parsed."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import polars as pl
from openai.types import Batch
from upath import UPath

from batch_assets.core import storage
from batch_assets.core.batch_client import TERMINAL_STATUSES, BatchClient
from batch_assets.core.costs import estimate_cost_usd
from batch_assets.core.output_parsing import RESULT_SCHEMA, empty_results, parse_batch_file
from batch_assets.core.records import BatchResult, Submission
from batch_assets.core.requested_ids import requested_ids
from batch_assets.core.retry_policy import hit_token_limit, merge_attempts, retryable
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.retries import (
    cancel_requested_ids,
    follow_up_materialization,
    recorded_attempts,
    submit_follow_up,
)
from batch_assets.pipeline.spec import PipelineSpec

NOT_RETURNED_CODE = "not_returned"
PREVIEW_ROWS = 5


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


def _validation_failure(failed: Sequence[Batch]) -> dg.Failure:
    errors = [
        {"batch_id": batch.id, **error.model_dump()}
        for batch in failed
        for error in (batch.errors.data if batch.errors and batch.errors.data else [])
    ]
    first = errors[0] if errors else {}
    where = f" on line {first['line']}" if first.get("line") else ""
    return dg.Failure(
        description=f"{len(failed)} batch(es) failed validation at the Batch API: "
        f"{first.get('code', 'unknown')}{where}: {first.get('message', 'no message')}",
        metadata={
            "validation_errors": dg.MetadataValue.json(errors),
            "failed_batch_ids": dg.MetadataValue.json([batch.id for batch in failed]),
        },
        allow_retries=False,
    )


def token_usage(batches: Sequence[Batch], output: pl.DataFrame) -> list[tuple[str, int, int]]:
    """(model, input tokens, output tokens) per batch: from `Batch.usage`, else the output lines."""
    usage = []
    for batch in batches:
        if batch.usage is not None:
            usage.append((batch.model or "", batch.usage.input_tokens, batch.usage.output_tokens))
            continue
        lines = output.filter(pl.col("batch_id") == batch.id)
        usage.append(
            (
                batch.model or (lines["model"].drop_nulls().first() or ""),
                int(lines["input_tokens"].sum()),
                int(lines["output_tokens"].sum()),
            )
        )
    return usage


def usage_metadata(
    batches: Sequence[Batch], output: pl.DataFrame, spec: PipelineSpec
) -> dict[str, Any]:
    """Token totals and the estimated cost at batch prices."""
    usage = token_usage(batches, output)
    input_tokens = sum(entry[1] for entry in usage)
    output_tokens = sum(entry[2] for entry in usage)
    costs = [estimate_cost_usd(model, i, o, spec.prices) for model, i, o in usage]
    known = [cost for cost in costs if cost is not None]
    metadata: dict[str, Any] = {
        "input_tokens": dg.MetadataValue.int(input_tokens),
        "output_tokens": dg.MetadataValue.int(output_tokens),
        "total_tokens": dg.MetadataValue.int(input_tokens + output_tokens),
        "usage_source": dg.MetadataValue.text(
            "batch usage" if all(b.usage is not None for b in batches) else "output lines"
        ),
    }
    if known:
        metadata["estimated_cost_usd"] = dg.MetadataValue.float(round(sum(known), 6))
    if len(known) < len(costs):
        metadata["cost_note"] = dg.MetadataValue.text(
            "Some models have no price in the pipeline's price table; their cost is left out."
        )
    return metadata


def _preview(frame: pl.DataFrame, columns: Sequence[str]) -> str:
    shown = frame.head(PREVIEW_ROWS).select(columns)
    rows = [f"| {' | '.join(columns)} |", f"|{' --- |' * len(columns)}"]
    for row in shown.iter_rows():
        cells = [str(value).replace("\n", " ").replace("|", "\\|")[:80] for value in row]
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


def collect_results(
    client: BatchClient, submission: Submission, batches: Sequence[Batch], downloads: UPath
) -> tuple[list[str], list[str], pl.DataFrame]:
    """Output and error file URLs and every line parsed; unreturned requests as error lines."""
    output_files: list[str] = []
    error_files: list[str] = []
    frames: list[pl.DataFrame] = []
    for batch in batches:
        for file_id, kind, files in (
            (batch.output_file_id, "output", output_files),
            (batch.error_file_id, "errors", error_files),
        ):
            if file_id:
                destination = downloads / f"{batch.id}_{kind}.jsonl"
                url, lines = _downloaded_and_parsed(client, file_id, destination, batch.id)
                files.append(url)
                frames.append(lines)
    returned = pl.concat(frames) if frames else empty_results()
    missing = requested_ids(submission).join(returned, on="custom_id", how="anti")
    if missing.height:
        statuses = {batch.id: batch.status for batch in batches}
        unreturned = missing.select(
            [
                pl.col("custom_id"),
                pl.col("batch_id"),
                pl.lit(NOT_RETURNED_CODE).alias("error_code"),
                pl.format(
                    "No output or error line came back (batch {}).",
                    pl.col("batch_id").replace_strict(statuses, return_dtype=pl.String),
                ).alias("error_message"),
            ]
        )
        returned = pl.concat([returned, unreturned], how="diagonal_relaxed").select(
            list(RESULT_SCHEMA)
        )
    return output_files, error_files, returned


def build_download_assets(spec: PipelineSpec) -> dg.AssetsDefinition:
    """Output and errors, materialized once every batch of the submission has ended."""
    output_name, errors_name = spec.output_key.path[-1], spec.errors_key.path[-1]
    common = dict(
        is_required=False,
        group_name=spec.group_name,
        kinds={"openai", "parquet"},
        tags=spec.tags(spec.download_role),
    )

    @dg.multi_asset(
        name=f"{spec.name}_download",
        outs={
            output_name: dg.AssetOut(
                key=spec.output_key,
                io_manager_key=spec.records_io_manager_key,
                description="Every successful answer, one row per custom_id (Parquet), and the "
                "raw output files; materialized by batch_completion_sensor when the batches end.",
                **common,
            ),
            errors_name: dg.AssetOut(
                key=spec.errors_key,
                description="Every request that did not succeed, with its error code and "
                "message: HTTP errors, expired, cancelled and unreturned requests.",
                io_manager_key=spec.io_manager_key,
                **common,
            ),
        },
        ins={"submission": dg.AssetIn(spec.batch_key)},
        can_subset=True,
        required_resource_keys={spec.resource_key},
    )
    def download(context: dg.AssetExecutionContext, submission: Submission) -> Iterator[dg.Output]:
        resource: OpenAIBatchResource = getattr(context.resources, spec.resource_key)
        client = resource.client
        attempts, submitted_at = recorded_attempts(context.instance, spec, submission)
        latest = attempts[-1]
        found = client.find_batches(
            {batch_id for attempt in attempts for batch_id in attempt.submission.batch_ids}
        )
        latest_batches = [found[batch_id] for batch_id in latest.submission.batch_ids]
        running = [batch for batch in latest_batches if batch.status not in TERMINAL_STATUSES]
        if running:
            counts = Counter(batch.status for batch in running)
            context.log.info(
                f"{len(running)} of {len(latest_batches)} batch(es) of attempt {latest.number} "
                f"still running ({', '.join(f'{s}: {n}' for s, n in sorted(counts.items()))}); "
                f"skipping {output_name} and {errors_name}. batch_completion_sensor will "
                "materialize them when the batches end."
            )
            return
        failed = [batch for batch in latest_batches if batch.status == "failed"]
        if any(not hit_token_limit(batch) for batch in failed):
            raise _validation_failure(failed)
        spec.prepare_storage(context.log.info)
        run_dir = spec.run_dir(context.run.run_id)
        folder = run_dir / "results"
        batches: list[Batch] = []
        output_files: list[str] = []
        error_files: list[str] = []
        returned: list[pl.DataFrame] = []
        for attempt in attempts:
            attempt_batches = [found[batch_id] for batch_id in attempt.submission.batch_ids]
            outputs, errors, lines = collect_results(
                client, attempt.submission, attempt_batches, spec.downloads_dir
            )
            batches += attempt_batches
            output_files += outputs
            error_files += errors
            returned.append(lines)
        merged = merge_attempts(returned)
        answered = (merged["status_code"] == 200).fill_null(False)
        errors = merged.filter(~answered)
        cancelled_on_request = bool(
            cancel_requested_ids(context.instance, spec, submitted_at)
            & set(latest.submission.batch_ids)
        )
        retry_ids = set(
            errors.filter(retryable(errors, cancel_requested=cancelled_on_request))["custom_id"]
        )
        waiting_for_capacity = bool(failed)
        counted = sum(
            1
            for attempt in attempts
            if not any(
                hit_token_limit(found[batch_id]) for batch_id in attempt.submission.batch_ids
            )
        )
        if retry_ids and (waiting_for_capacity or counted < spec.max_attempts):
            follow_up = submit_follow_up(
                client, spec, submission, retry_ids, latest.number + 1, run_dir / "retry"
            )
            context.log_event(
                follow_up_materialization(
                    spec,
                    submission,
                    follow_up,
                    latest.number + 1,
                    resource.host,
                    latest.token_limit_waits + 1 if waiting_for_capacity else 0,
                )
            )
            reason = (
                "the enqueued-token limit was reached"
                if waiting_for_capacity
                else "they failed for a retryable reason"
            )
            context.log.info(
                f"Resubmitted {len(retry_ids)} request(s) because {reason}, as "
                f"attempt {latest.number + 1} (batches {follow_up.batch_ids}); "
                f"batch_completion_sensor will materialize {output_name} and {errors_name} "
                "when they end."
            )
            return
        output = merged.filter(answered)
        result = BatchResult(
            output_files=tuple(output_files),
            error_files=tuple(error_files),
            output_table=storage.write_parquet(output, folder / "output.parquet"),
            errors_table=storage.write_parquet(errors, folder / "errors.parquet"),
            batch_ids=tuple(batch.id for batch in batches),
        )
        statuses = Counter(batch.status for batch in batches)
        common_metadata = {
            "backend": dg.MetadataValue.text(resource.host),
            "batch_statuses": dg.MetadataValue.text(
                ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
            ),
            "batch_ids": dg.MetadataValue.json(list(result.batch_ids)),
        }
        total = output.height + errors.height
        if spec.output_key in context.selected_asset_keys:
            yield dg.Output(
                result,
                output_name=output_name,
                metadata={
                    **common_metadata,
                    "row_count": dg.MetadataValue.int(output.height),
                    "attempts": dg.MetadataValue.int(latest.number),
                    **usage_metadata(batches, output, spec),
                    "output_table": dg.MetadataValue.path(result.output_table),
                    "preview": dg.MetadataValue.md(
                        _preview(output, ["custom_id", "answer", "finish_reason"])
                    ),
                },
            )
        if spec.errors_key in context.selected_asset_keys:
            codes = Counter(errors["error_code"].fill_null("").to_list())
            yield dg.Output(
                errors,
                output_name=errors_name,
                metadata={
                    **common_metadata,
                    "row_count": dg.MetadataValue.int(errors.height),
                    "error_rate": dg.MetadataValue.float(
                        round(errors.height / total, 6) if total else 0.0
                    ),
                    "error_codes": dg.MetadataValue.json(dict(sorted(codes.items()))),
                    "errors_table": dg.MetadataValue.path(result.errors_table),
                },
            )

    return download
