"""The price of a submission in the UI: the forecast on `<name>_requests`, the actual usage per
model on `<name>_output` (which calibrates the next forecast), and the two side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg
import polars as pl

from batch_assets.core.cost_estimate import ModelEstimate, ModelUsage, total_cost
from batch_assets.core.costs import estimate_cost_usd
from batch_assets.core.records import SubmittedBatch
from batch_assets.core.request_plan import RequestPlan
from batch_assets.pipeline.keys import (
    CACHE_HITS_KEY,
    CACHE_MISSES_KEY,
    CACHE_SAVED_KEY,
    COST_ESTIMATE_KEY,
    COST_ESTIMATE_TABLE_KEY,
    DUPLICATES_FOLDED_KEY,
    ESTIMATE_VS_ACTUAL_KEY,
    USAGE_BY_MODEL_KEY,
)
from batch_assets.pipeline.spec import PipelineSpec


def earlier_usage(instance: dg.DagsterInstance, spec: PipelineSpec) -> dict[str, ModelUsage]:
    """Per model, the actual usage `<name>_output` recorded when it was last materialized."""
    event = instance.get_latest_materialization_event(spec.output_key)
    materialization = event.asset_materialization if event is not None else None
    value = materialization.metadata.get(USAGE_BY_MODEL_KEY) if materialization else None
    if not isinstance(value, dg.JsonMetadataValue) or not isinstance(value.data, dict):
        return {}
    usage: dict[str, ModelUsage] = {}
    for model, entry in value.data.items():
        try:
            usage[model] = ModelUsage(model, *(int(entry[name]) for name in _USAGE_FIELDS))
        except (KeyError, TypeError, ValueError):  # written by another version: not used
            continue
    return usage


_USAGE_FIELDS = ("requests", "input_tokens", "output_tokens", "input_chars")


def cache_metadata(plan: RequestPlan) -> dict[str, dg.MetadataValue]:
    """How much of the input the cache answered and folded, and what that saved."""
    return {
        CACHE_HITS_KEY: dg.MetadataValue.int(plan.cache_hits),
        CACHE_MISSES_KEY: dg.MetadataValue.int(plan.requests - plan.cache_hits),
        DUPLICATES_FOLDED_KEY: dg.MetadataValue.int(plan.duplicates_folded),
        CACHE_SAVED_KEY: dg.MetadataValue.float(plan.saved_usd),
    }


def estimate_table(estimates: Sequence[ModelEstimate]) -> str:
    """The forecast per model as a Markdown table, saying which method gave each figure."""
    rows = [
        "| model | requests | input tokens | method | output tokens | method | cost (USD) |",
        "|---|---:|---:|---|---:|---|---:|",
    ]
    for item in estimates:
        cost = "no price" if item.cost_usd is None else f"{item.cost_usd:.4f}"
        rows.append(
            f"| {item.model} | {item.requests:,} | {item.input_tokens:,} | {item.input_method} "
            f"| {item.output_tokens:,} | {item.output_method} | {cost} |"
        )
    return "\n".join(rows)


def estimate_metadata(plan: RequestPlan) -> dict[str, dg.MetadataValue]:
    """The price of sending the plan's shards at batch prices, per model and in all."""
    cost = total_cost(plan.estimates)
    return {
        COST_ESTIMATE_KEY: dg.MetadataValue.float(round(cost or 0.0, 6)),
        COST_ESTIMATE_TABLE_KEY: dg.MetadataValue.md(estimate_table(plan.estimates)),
    }


def usage_by_model(
    output: pl.DataFrame, batches: Sequence[SubmittedBatch], plan: RequestPlan | None
) -> dict[str, ModelUsage]:
    """The fresh answers' usage per requested model (a batch's shard model, not the dated
    snapshot the answer names), with the characters of the lines that asked for them."""
    models = {batch.batch_id: batch.model or "" for batch in batches}
    sent = {batch.model or "": 0 for batch in batches}
    for batch in batches:
        sent[batch.model or ""] += batch.request_count
    fresh = output.filter(pl.col("batch_id").is_in(list(models)))
    grouped = (
        fresh.with_columns(
            pl.col("batch_id").replace_strict(models, return_dtype=pl.String).alias("asked")
        )
        .group_by("asked")
        .agg(
            pl.len().alias("requests"),
            pl.col("input_tokens").sum(),
            pl.col("output_tokens").sum(),
        )
    )
    chars = plan.sent_chars if plan is not None else {}
    usage: dict[str, ModelUsage] = {}
    for model, requests, input_tokens, output_tokens in grouped.iter_rows():
        share = requests / sent[model] if sent.get(model) else 0.0
        usage[model] = ModelUsage(
            model,
            requests,
            int(input_tokens or 0),
            int(output_tokens or 0),
            round(chars.get(model, 0) * share),
        )
    return usage


def actual_metadata(
    fresh: Mapping[str, ModelUsage],
    learned: Mapping[str, ModelUsage],
    plan: RequestPlan | None,
    spec: PipelineSpec,
) -> dict[str, dg.MetadataValue]:
    """The usage per model the next forecast learns from (`learned`: this submission's, or the
    last one's when the cache answered everything) and, beside the forecast, the `fresh` usage
    of what this submission sent."""
    metadata: dict[str, dg.MetadataValue] = {
        USAGE_BY_MODEL_KEY: dg.MetadataValue.json(
            {
                model: {name: getattr(entry, name) for name in _USAGE_FIELDS}
                for model, entry in sorted(learned.items())
            }
        )
    }
    if plan is None or not plan.estimates:
        return metadata
    rows = [
        "| model | input tokens (est. / actual) | output tokens (est. / actual) "
        "| cost USD (est. / actual) |",
        "|---|---:|---:|---:|",
    ]
    for item in plan.estimates:
        actual = fresh.get(item.model)
        actual_in = actual.input_tokens if actual else 0
        actual_out = actual.output_tokens if actual else 0
        cost = estimate_cost_usd(item.model, actual_in, actual_out, spec.prices)
        rows.append(
            f"| {item.model} | {item.input_tokens:,} / {actual_in:,} "
            f"| {item.output_tokens:,} / {actual_out:,} "
            f"| {_dollars(item.cost_usd)} / {_dollars(cost)} |"
        )
    metadata[ESTIMATE_VS_ACTUAL_KEY] = dg.MetadataValue.md("\n".join(rows))
    return metadata


def _dollars(value: float | None) -> str:
    return "no price" if value is None else f"{value:.4f}"
