"""The three ways requests come into a pipeline."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from batch_assets.core.request_template import RequestTemplate


@dataclass(frozen=True)
class DataFrameSource:
    """Requests rendered by a template from an upstream asset that holds a polars DataFrame."""

    upstream: dg.AssetKey | str
    template: RequestTemplate

    @property
    def upstream_key(self) -> dg.AssetKey:
        """The upstream asset's key."""
        return dg.AssetKey.from_coercible(self.upstream)


PARTITION_PLACEHOLDER = "{partition_key}"


@dataclass(frozen=True)
class JsonlFileSource:
    """A file of ready request lines, as the Batch API takes them; with partitions, a path
    holding `{partition_key}` names one file per partition."""

    path: Path | str

    @property
    def per_partition(self) -> bool:
        """Whether the path names one file per partition."""
        return PARTITION_PLACEHOLDER in str(self.path)

    def path_for(self, partition_key: str | None) -> str:
        """The file of one partition (or the one file)."""
        if not self.per_partition:
            return str(self.path)
        if partition_key is None:
            raise ValueError(
                f"the path {str(self.path)!r} holds {PARTITION_PLACEHOLDER}; give the pipeline "
                "a partitions_def"
            )
        return str(self.path).replace(PARTITION_PLACEHOLDER, partition_key)


@dataclass(frozen=True)
class IteratorSource:
    """A function that yields request dicts, streamed to disk one at a time; a function that
    takes an argument is given the partition key."""

    function: Callable[..., Iterable[Mapping[str, Any]]]

    @property
    def takes_partition_key(self) -> bool:
        """Whether the function takes the partition key."""
        return bool(inspect.signature(self.function).parameters)

    def requests(self, partition_key: str | None) -> Iterable[Mapping[str, Any]]:
        """The function's requests (for one partition)."""
        if self.takes_partition_key:
            if partition_key is None:
                raise ValueError(
                    f"{self.function.__qualname__} takes a partition key; give the pipeline a "
                    "partitions_def"
                )
            return self.function(partition_key)
        return self.function()


BatchSource = DataFrameSource | JsonlFileSource | IteratorSource
