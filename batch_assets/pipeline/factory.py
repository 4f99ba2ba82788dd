"""`build_batch_pipeline`: a name, a source and an endpoint in, ready Dagster definitions out."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from upath import UPath

from batch_assets.core.costs import DEFAULT_PRICES, ModelPrice
from batch_assets.core.limits import (
    CHAT_COMPLETIONS,
    DEFAULT_LIMITS,
    BatchLimits,
    check_completion_window,
    check_endpoint,
)
from batch_assets.core.results_join import check_typed_columns
from batch_assets.pipeline.arguments import (
    CacheMode,
    SupersededAction,
    check_cache_max_age,
    check_cache_mode,
    check_error_rate,
    check_kinds,
    check_max_attempts,
    check_max_cost,
    check_metadata,
    check_name,
    check_on_superseded,
    check_tags,
)
from batch_assets.pipeline.budget import build_budget_check
from batch_assets.pipeline.cancel_job import build_cancel_job
from batch_assets.pipeline.checks import build_checks, build_schema_check
from batch_assets.pipeline.download_assets import build_download_assets
from batch_assets.pipeline.keys import (
    DEFAULT_RESOURCE_KEY,
)
from batch_assets.pipeline.parquet_io_manager import PolarsParquetIOManager
from batch_assets.pipeline.request_assets import build_requests_asset, source_file_spec
from batch_assets.pipeline.results_asset import build_results_asset
from batch_assets.pipeline.sensor import completion_sensor
from batch_assets.pipeline.sources import (
    PARTITION_PLACEHOLDER,
    BatchSource,
    DataFrameSource,
    IteratorSource,
    JsonlFileSource,
)
from batch_assets.pipeline.spec import PipelineSpec, resolve_storage
from batch_assets.pipeline.submit_asset import build_submit_asset


def build_batch_pipeline(
    name: str,
    source: BatchSource,
    *,
    endpoint: str | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    group_name: str | None = None,
    description: str | None = None,
    limits: BatchLimits = DEFAULT_LIMITS,
    prices: Mapping[str, ModelPrice] = DEFAULT_PRICES,
    max_error_rate: float = 0.05,
    max_attempts: int = 3,
    schedule: str | None = None,
    storage_dir: Path | str | UPath | None = None,
    resource_key: str = DEFAULT_RESOURCE_KEY,
    io_manager_key: str | None = None,
    automation_condition: dg.AutomationCondition[Any] | None = None,
    owners: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
    kinds: Collection[str] = (),
    pool: str | None = None,
    partitions_def: dg.PartitionsDefinition[str] | None = None,
    cache: CacheMode = "reuse",
    cache_max_age: timedelta | None = None,
    cache_name: str | None = None,
    max_cost_usd: float | None = None,
    on_superseded: SupersededAction = "keep",
) -> dg.Definitions:
    """Assets, checks, jobs and an optional schedule that run `source` through the Batch API.

    The assets are `<name>_requests`, `<name>_batch`, `<name>_output`, `<name>_errors` and, for a
    DataFrame source, `<name>_results`; the jobs are `<name>_submit_job` and `<name>_cancel_job`.
    The completion sensor of `resource_key` (`batch_completion_sensor` for the default
    `openai_batch`, shared by every pipeline on that resource) watches the batches and
    materializes the downloads when they end. The output, errors and results frames are stored
    as Parquet under `<storage>/<name>/tables/` by the `<name>_io_manager` resource returned
    here, unless `io_manager_key` names an IO manager you provide; the records runs hand each
    other (shards, submission) are pickled under `<storage>/<name>/records/` by
    `<name>_records_io_manager`. The storage is `storage_dir`, else $BATCH_ASSETS_STORAGE_DIR,
    else `data/generated/`: a path or a URL such as `s3://bucket/prefix`, read once here.

    `automation_condition` applies to `<name>_requests` and `<name>_batch` (the downloads stay
    with the sensor); `owners`, `tags` and `kinds` go on every asset; every step runs in the
    concurrency pool `pool` (default: the name of the resource, so pipelines sharing an API
    share a pool, and a limit on it keeps a backfill from flooding the API).

    With `partitions_def` every asset is partitioned and each partition is its own submission:
    its requests (the upstream DataFrame's partition, a JSONL path holding `{partition_key}`,
    or an iterator function given the key), batches, attempts, output, errors and results.

    The request cache (`cache="reuse"`, the default) answers every request it has seen answered
    (same endpoint and body) within `cache_max_age`, and submits each distinct request once;
    `"refresh"` submits everything and stores the new answers, `"off"` neither reads nor
    stores. It lives at `<storage>/request_cache/<cache_name or name>/<backend host>/`:
    pipelines that name the same cache share it. `<name>_requests` shows the price at batch
    rates before anything is submitted; `max_cost_usd` adds a blocking check that refuses a
    submission forecast above it unless the run carries the tag
    `batch_assets/approve_cost_usd=<dollars>`. With `on_superseded="cancel"`, a new submission
    cancels the batches of the one it replaces that are still running (their finished answers
    still go into the cache).
    """
    check_name(name)
    if isinstance(source, DataFrameSource):
        if endpoint is not None and endpoint != source.template.endpoint:
            raise ValueError(
                f"endpoint {endpoint!r} differs from the template's {source.template.endpoint!r}"
            )
        endpoint = source.template.endpoint
        check_typed_columns(source.template)
    batch_endpoint = check_endpoint(endpoint or CHAT_COMPLETIONS)
    window = check_completion_window(completion_window)
    user_metadata = check_metadata(metadata or {})
    if partitions_def is None:
        if isinstance(source, JsonlFileSource) and source.per_partition:
            raise ValueError(
                f"the path {str(source.path)!r} holds {PARTITION_PLACEHOLDER}; give the "
                "pipeline a partitions_def"
            )
        if isinstance(source, IteratorSource) and source.takes_partition_key:
            raise ValueError(
                f"{source.function.__qualname__} takes a partition key; give the pipeline a "
                "partitions_def"
            )
    user_tags = check_tags(tags or {})
    user_kinds = check_kinds(kinds)
    check_max_attempts(max_attempts)
    check_error_rate(max_error_rate)
    cache_mode = check_cache_mode(cache)
    if cache_name is not None:
        check_name(cache_name, setting="cache_name")
    storage, storage_setting = resolve_storage(storage_dir)
    spec = PipelineSpec(
        name=name,
        source=source,
        endpoint=batch_endpoint,
        completion_window=window,
        metadata=user_metadata,
        group_name=group_name or name,
        description=description,
        limits=limits,
        prices=dict(prices),
        max_error_rate=max_error_rate,
        max_attempts=max_attempts,
        storage=storage,
        storage_setting=storage_setting,
        resource_key=resource_key,
        io_manager_key=f"{name}_io_manager" if io_manager_key is None else io_manager_key,
        automation_condition=automation_condition,
        owners=tuple(owners),
        user_tags=user_tags,
        user_kinds=user_kinds,
        pool=resource_key if pool is None else pool,
        partitions_def=partitions_def,
        cache_mode=cache_mode,
        cache_max_age=check_cache_max_age(cache_max_age),
        cache_name=cache_name,
        max_cost_usd=check_max_cost(max_cost_usd),
        on_superseded=check_on_superseded(on_superseded),
    )
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = [
        build_requests_asset(spec),
        build_submit_asset(spec),
        build_download_assets(spec),
    ]
    checks = build_checks(spec)
    if spec.max_cost_usd is not None:
        checks.append(build_budget_check(spec))
    if isinstance(source, DataFrameSource):
        assets.append(build_results_asset(spec, source))
        if source.template.response_format is not None:
            checks.append(build_schema_check(spec))
    if isinstance(source, JsonlFileSource):
        assets.append(source_file_spec(spec, source))
    # The downloads run in the submit job too: with every request answered by the cache they
    # materialize at once; otherwise they say what is still running and the sensor does the rest.
    submitted = [spec.requests_key, spec.batch_key, spec.output_key, spec.errors_key]
    if isinstance(source, DataFrameSource):
        submitted.append(spec.results_key)
    submit_job = dg.define_asset_job(
        name=f"{name}_submit_job",
        selection=dg.AssetSelection.assets(*submitted),
        description=f"Build {name}'s requests and submit them; the sensor does the rest.",
        tags=spec.tags(),
    )
    schedules = []
    if schedule is not None:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{name}_schedule",
                cron_schedule=schedule,
                job=submit_job,
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description=f"Submit {name} on '{schedule}'; stopped until you start it.",
            )
        )
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[submit_job, build_cancel_job(spec)],
        schedules=schedules,
        sensors=[completion_sensor(resource_key)],
        resources={
            spec.records_io_manager_key: dg.FilesystemIOManager(base_dir=str(spec.records_dir)),
            **(
                {spec.io_manager_key: PolarsParquetIOManager(base_dir=str(spec.tables_dir))}
                if io_manager_key is None
                else {}
            ),
        },
    )
