"""`PipelineSpec`: what the factory was asked for, and the names and folders that follow from it."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from upath import UPath

from batch_assets.core.costs import ModelPrice
from batch_assets.core.limits import BatchEndpoint, BatchLimits, CompletionWindow
from batch_assets.core.request_cache import RequestCache
from batch_assets.core.storage import (
    StorageError,
    check_storage,
    describe_removed,
    remove_orphaned_temporaries,
    storage_location,
)
from batch_assets.pipeline.arguments import CacheMode, SupersededAction
from batch_assets.pipeline.keys import (
    DOWNLOAD_ROLE,
    PIPELINE_TAG,
    RESOURCE_TAG,
    ROLE_TAG,
    STORAGE_DIR_VARIABLE,
    SUBMISSION_ROLE,
)
from batch_assets.pipeline.sources import BatchSource, DataFrameSource, JsonlFileSource
from batch_assets.project import GENERATED_DIR

DEFAULT_STORAGE_DIR = GENERATED_DIR
# The version of what `<name>_requests` hands on (a RequestPlan since the request cache, a list of
# shards before): part of its code version, so that the UI marks older materializations stale.
RECORDS_VERSION = 2


def resolve_storage(storage_dir: str | Path | UPath | None) -> tuple[UPath, str]:
    """The storage root (`storage_dir`, else $BATCH_ASSETS_STORAGE_DIR, else `data/generated/`),
    and the name of the setting it came from; an unknown scheme fails here, by that name."""
    if storage_dir is not None:
        setting, value = "storage_dir", storage_dir
    elif os.environ.get(STORAGE_DIR_VARIABLE):
        setting, value = STORAGE_DIR_VARIABLE, os.environ[STORAGE_DIR_VARIABLE]
    else:
        setting, value = STORAGE_DIR_VARIABLE, DEFAULT_STORAGE_DIR
    return storage_location(value, setting=setting), setting


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline's settings, asset keys and storage folders."""

    name: str
    source: BatchSource
    endpoint: BatchEndpoint
    completion_window: CompletionWindow
    metadata: dict[str, str]
    group_name: str
    description: str | None
    limits: BatchLimits
    prices: dict[str, ModelPrice]
    max_error_rate: float
    max_attempts: int
    storage: UPath
    storage_setting: str
    resource_key: str
    io_manager_key: str
    automation_condition: dg.AutomationCondition[Any] | None = None
    owners: tuple[str, ...] = ()
    user_tags: Mapping[str, str] = field(default_factory=dict)
    user_kinds: frozenset[str] = frozenset()
    pool: str | None = None
    partitions_def: dg.PartitionsDefinition[str] | None = None
    cache_mode: CacheMode = "reuse"
    cache_max_age: timedelta | None = None
    cache_name: str | None = None
    max_cost_usd: float | None = None
    on_superseded: SupersededAction = "keep"

    def kinds(self, *own: str) -> set[str]:
        """An asset's own kinds and those the pipeline was given."""
        return {*own, *self.user_kinds}

    @property
    def request_code_version(self) -> str:
        """A hash of what shapes the requests: the endpoint, the limits and the source's
        template (model, prompts, parameters, schema), file path or function; a change marks
        `<name>_requests` and what follows it stale in the UI."""
        source = self.source
        if isinstance(source, DataFrameSource):
            shape: object = asdict(source.template)
        elif isinstance(source, JsonlFileSource):
            shape = {"path": str(source.path)}
        else:
            shape = {"function": f"{source.function.__module__}:{source.function.__qualname__}"}
        text = json.dumps(
            {
                "endpoint": self.endpoint,
                "limits": asdict(self.limits),
                "source": shape,
                "records": RECORDS_VERSION,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def records_io_manager_key(self) -> str:
        """The IO manager that pickles the records runs hand each other, on the storage."""
        return f"{self.name}_records_io_manager"

    @property
    def requests_key(self) -> dg.AssetKey:
        """`<name>_requests`."""
        return dg.AssetKey(f"{self.name}_requests")

    @property
    def source_file_key(self) -> dg.AssetKey:
        """`<name>_source_file`: the JSONL file a file pipeline reads."""
        return dg.AssetKey(f"{self.name}_source_file")

    @property
    def batch_key(self) -> dg.AssetKey:
        """`<name>_batch`."""
        return dg.AssetKey(f"{self.name}_batch")

    @property
    def output_key(self) -> dg.AssetKey:
        """`<name>_output`."""
        return dg.AssetKey(f"{self.name}_output")

    @property
    def errors_key(self) -> dg.AssetKey:
        """`<name>_errors`."""
        return dg.AssetKey(f"{self.name}_errors")

    @property
    def results_key(self) -> dg.AssetKey:
        """`<name>_results`."""
        return dg.AssetKey(f"{self.name}_results")

    def tags(self, role: str | None = None) -> dict[str, str]:
        """Tags that let the sensor of the pipeline's resource find its assets."""
        tags = {**self.user_tags, PIPELINE_TAG: self.name, RESOURCE_TAG: self.resource_key}
        if role is not None:
            tags[ROLE_TAG] = role
        return tags

    submission_role = SUBMISSION_ROLE
    download_role = DOWNLOAD_ROLE

    @property
    def storage_root(self) -> UPath:
        """Where this pipeline's runs write every file a later run reads."""
        return self.storage / self.name

    @property
    def downloads_dir(self) -> UPath:
        """Where result files are downloaded, once each, for every run to read."""
        return self.storage_root / "downloads"

    @property
    def tables_dir(self) -> UPath:
        """Where the pipeline's own IO manager keeps the errors and results tables."""
        return self.storage_root / "tables"

    @property
    def records_dir(self) -> UPath:
        """Where the pickled records (shards, submission, results) are kept between runs."""
        return self.storage_root / "records"

    @property
    def cache_dir(self) -> UPath:
        """`<storage>/request_cache/<cache_name or name>/`: a folder per backend below it."""
        return self.storage / "request_cache" / (self.cache_name or self.name)

    def request_cache(self, host: str) -> RequestCache:
        """The pipeline's request cache for the Batch API at `host`:
        `<storage>/request_cache/<cache_name or name>/<host>/`, shared by the pipelines that name
        the same cache; another backend (the local Batch API, another Azure resource) never
        answers for this one."""
        folder = re.sub(r"[^A-Za-z0-9._-]", "_", host) or "default"
        return RequestCache(
            self.storage / "request_cache" / (self.cache_name or self.name) / folder
        )

    def run_dir(self, run_id: str) -> UPath:
        """Where one run of this pipeline writes its files."""
        return self.storage_root / run_id

    def prepare_storage(self, log: Callable[[str], None]) -> None:
        """Check that the store answers (bucket, credentials), before anything is uploaded;
        then remove what killed runs of this pipeline (and writers of its request cache) left
        behind, and say so."""
        try:
            check_storage(self.storage, setting=self.storage_setting)
        except StorageError as error:
            raise dg.Failure(description=f"Nothing uploaded: {error}") from None
        for root in (self.storage_root, self.cache_dir):
            describe_removed(remove_orphaned_temporaries(root), log)
