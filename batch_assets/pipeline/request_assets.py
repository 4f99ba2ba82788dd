"""`<name>_requests`: the validated, sharded request JSONL."""

# Dagster reads `context: dg.AssetExecutionContext` at definition time, so annotations stay
# evaluated here (no `from __future__ import annotations`).

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from batch_assets.core import storage
from batch_assets.core.request_plan import RequestPlan, estimate_only, plan_requests
from batch_assets.core.request_template import TemplateError
from batch_assets.core.request_validation import RequestValidationError
from batch_assets.core.results_join import clash_message, clashing_columns
from batch_assets.core.sharding import (
    Shard,
    shard_jsonl_file,
    shard_requests,
    shard_template_frame,
)
from batch_assets.pipeline.keys import ROW_COUNT_KEY
from batch_assets.pipeline.pricing import cache_metadata, earlier_usage, estimate_metadata
from batch_assets.pipeline.resource import OpenAIBatchResource
from batch_assets.pipeline.sources import DataFrameSource, IteratorSource, JsonlFileSource
from batch_assets.pipeline.spec import PipelineSpec
from batch_assets.pipeline.table_metadata import requests_preview


def requests_metadata(plan: RequestPlan) -> dict[str, Any]:
    """What the UI shows for a materialization of `<name>_requests`: the requests to submit
    (after the cache), what the cache answered and folded, and the price."""
    shards = plan.shards
    return {
        ROW_COUNT_KEY: dg.MetadataValue.int(plan.requests),
        "submitted_requests": dg.MetadataValue.int(plan.submitted),
        "bytes": dg.MetadataValue.int(sum(shard.n_bytes for shard in shards)),
        "shard_count": dg.MetadataValue.int(len(shards)),
        "models": dg.MetadataValue.text(", ".join(sorted({shard.model or "" for shard in shards}))),
        "input_tokens_estimate": dg.MetadataValue.int(
            sum(estimate.input_tokens for estimate in plan.estimates)
        ),
        "output_tokens_estimate": dg.MetadataValue.int(
            sum(estimate.output_tokens for estimate in plan.estimates)
        ),
        **estimate_metadata(plan),
        **(cache_metadata(plan) if not plan.full_shards else {}),
        "shard_files": dg.MetadataValue.json([shard.url for shard in shards]),
        **requests_preview(shards),
    }


def _validation_failure(error: RequestValidationError) -> dg.Failure:
    return dg.Failure(
        description=f"Invalid requests, nothing uploaded: {error}",
        metadata={
            "line": dg.MetadataValue.int(error.line) if error.line else dg.MetadataValue.text("-"),
            "field": dg.MetadataValue.text(error.field or "-"),
        },
        allow_retries=False,
    )


def _plan(
    spec: PipelineSpec, context: dg.AssetExecutionContext, shards: list[Shard]
) -> RequestPlan:
    """What of the shards to submit, after the cache and folding, and its price."""
    earlier = earlier_usage(context.instance, spec)
    if spec.cache_mode == "off":
        return estimate_only(shards, endpoint=spec.endpoint, earlier=earlier, prices=spec.prices)
    resource: OpenAIBatchResource = getattr(context.resources, spec.resource_key)
    cache = spec.request_cache(resource.host)
    plan = plan_requests(
        shards,
        spec.run_dir(context.run.run_id) / "submit",
        endpoint=spec.endpoint,
        limits=spec.limits,
        cache=cache,
        reuse=spec.cache_mode == "reuse",
        max_age=spec.cache_max_age,
        earlier=earlier,
        prices=spec.prices,
    )
    context.log.info(
        f"{plan.cache_hits} of {plan.requests} request(s) answered from the cache at "
        f"{storage.url_of(cache.root)} ({spec.cache_mode}), {plan.duplicates_folded} folded into "
        f"an identical request; {plan.submitted} to submit in {len(plan.shards)} shard(s)."
    )
    return plan


def _build_requests(
    spec: PipelineSpec, context: dg.AssetExecutionContext, frame: pl.DataFrame | None
) -> dg.Output[RequestPlan]:
    shards = _build_shards(spec, context, frame)
    try:
        plan = _plan(spec, context, shards)
    except RequestValidationError as error:
        raise _validation_failure(error) from error
    return dg.Output(plan, metadata=requests_metadata(plan))


def _build_shards(
    spec: PipelineSpec, context: dg.AssetExecutionContext, frame: pl.DataFrame | None
) -> list[Shard]:
    source = spec.source
    partition = context.partition_key if context.has_partition_key else None
    out_dir = spec.run_dir(context.run.run_id) / "requests"
    spec.prepare_storage(context.log.info)
    try:
        if isinstance(source, DataFrameSource):
            assert frame is not None
            clash = clashing_columns(frame.columns, source.template)
            if clash:
                raise dg.Failure(
                    description="The rows cannot be joined with their results, nothing "
                    f"uploaded: {clash_message(clash)}",
                    metadata={"columns": dg.MetadataValue.json(clash)},
                    allow_retries=False,
                )
            shards = shard_template_frame(frame, source.template, out_dir, limits=spec.limits)
        elif isinstance(source, JsonlFileSource):
            with storage.local_copy(source.path_for(partition)) as path:
                shards = shard_jsonl_file(
                    path,
                    out_dir,
                    endpoint=spec.endpoint,
                    limits=spec.limits,
                    source=storage.safe_url(source.path),
                )
        else:
            shards = shard_requests(
                source.requests(partition), out_dir, endpoint=spec.endpoint, limits=spec.limits
            )
    except RequestValidationError as error:
        raise _validation_failure(error) from error
    except TemplateError as error:
        raise dg.Failure(
            description=f"The request template does not fit the data, nothing uploaded: {error}",
            allow_retries=False,
        ) from error
    context.log.info(
        f"{sum(s.n_requests for s in shards)} requests in {len(shards)} shard(s) at "
        f"{storage.url_of(out_dir)}"
    )
    return shards


def source_file_spec(spec: PipelineSpec, source: JsonlFileSource) -> dg.AssetSpec:
    """The request file as an external asset, so lineage starts at the data."""
    return dg.AssetSpec(
        spec.source_file_key,
        group_name=spec.group_name,
        kinds=spec.kinds("jsonl"),
        description=f"Ready batch requests in {source.path}, maintained outside Dagster.",
        metadata={"path": dg.MetadataValue.path(str(source.path))},
        tags=spec.tags(),
        owners=spec.owners,
        partitions_def=spec.partitions_def,
    )


def build_requests_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    """The asset that turns the pipeline's source into shards ready to upload."""
    source = spec.source
    origin = {
        DataFrameSource: "rendered from an upstream DataFrame by a request template",
        JsonlFileSource: "read from a JSONL file of ready requests",
        IteratorSource: "streamed from a function that yields request dicts",
    }[type(source)]

    def decorator(
        ins: Mapping[str, dg.AssetIn] | None = None, deps: Sequence[dg.AssetKey] = ()
    ) -> Callable[[Callable[..., dg.Output[RequestPlan]]], dg.AssetsDefinition]:
        return dg.asset(
            name=spec.requests_key.path[-1],
            ins=ins,
            deps=deps,
            group_name=spec.group_name,
            io_manager_key=spec.records_io_manager_key,
            kinds=spec.kinds("polars", "openai"),
            tags=spec.tags(),
            owners=spec.owners,
            pool=spec.pool,
            automation_condition=spec.automation_condition,
            code_version=spec.request_code_version,
            partitions_def=spec.partitions_def,
            required_resource_keys={spec.resource_key},  # the cache is per backend
            description=f"Batch requests for {spec.endpoint}, {origin}, validated; those the "
            "request cache cannot answer, each distinct request once, split into shards within "
            "the Batch API's limits, with their price at batch rates.",
        )

    if isinstance(source, DataFrameSource):

        @decorator(ins={"frame": dg.AssetIn(source.upstream_key)})
        def requests_from_frame(
            context: dg.AssetExecutionContext, frame: pl.DataFrame
        ) -> dg.Output[RequestPlan]:
            return _build_requests(spec, context, frame)

        return requests_from_frame

    @decorator(deps=[spec.source_file_key] if isinstance(source, JsonlFileSource) else [])
    def requests_asset(context: dg.AssetExecutionContext) -> dg.Output[RequestPlan]:
        return _build_requests(spec, context, None)

    return requests_asset
