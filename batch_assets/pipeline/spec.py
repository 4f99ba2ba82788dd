"""`PipelineSpec`: what the factory was asked for, and the names and folders that follow from it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from batch_assets.core.atomic import remove_orphaned_temporaries
from batch_assets.core.costs import ModelPrice
from batch_assets.core.limits import BatchLimits
from batch_assets.pipeline.sensor import DOWNLOAD_ROLE, PIPELINE_TAG, ROLE_TAG, SUBMISSION_ROLE
from batch_assets.pipeline.sources import BatchSource
from batch_assets.project import GENERATED_DIR

STORAGE_DIR_VARIABLE = "BATCH_ASSETS_STORAGE_DIR"
DEFAULT_STORAGE_DIR = GENERATED_DIR


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline's settings, asset keys and storage folders."""

    name: str
    source: BatchSource
    endpoint: str
    completion_window: str
    metadata: dict[str, str]
    group_name: str
    description: str | None
    limits: BatchLimits
    prices: dict[str, ModelPrice]
    max_error_rate: float
    max_attempts: int
    storage_dir: Path | None
    resource_key: str
    io_manager_key: str

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
        """Tags that let the sensor find this pipeline's assets."""
        tags = {PIPELINE_TAG: self.name}
        if role is not None:
            tags[ROLE_TAG] = role
        return tags

    submission_role = SUBMISSION_ROLE
    download_role = DOWNLOAD_ROLE

    @property
    def storage_root(self) -> Path:
        """Where this pipeline's runs write their files (never inside `data/` inputs)."""
        root = self.storage_dir or Path(os.environ.get(STORAGE_DIR_VARIABLE, DEFAULT_STORAGE_DIR))
        return root / self.name

    @property
    def downloads_dir(self) -> Path:
        """Where result files are downloaded, once each, for every run to read."""
        return self.storage_root / "downloads"

    @property
    def tables_dir(self) -> Path:
        """Where the pipeline's own IO manager keeps the errors and results tables."""
        return self.storage_root / "tables"

    def run_dir(self, run_id: str) -> Path:
        """Where one run of this pipeline writes its files."""
        return self.storage_root / run_id

    def remove_orphaned_temporaries(self, log: Callable[[str], None]) -> None:
        """Delete temporaries that killed runs of this pipeline left behind, and say so."""
        removed = remove_orphaned_temporaries(self.storage_root)
        if removed:
            log(
                f"Removed {len(removed)} temporary file(s) that killed runs left behind: "
                f"{', '.join(str(path) for path in removed[:5])}"
            )
