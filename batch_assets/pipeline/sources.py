"""The three ways requests come into a pipeline."""

from __future__ import annotations

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


@dataclass(frozen=True)
class JsonlFileSource:
    """A file of ready request lines, as the Batch API takes them."""

    path: Path | str


@dataclass(frozen=True)
class IteratorSource:
    """A function that yields request dicts, streamed to disk one at a time."""

    function: Callable[[], Iterable[Mapping[str, Any]]]


BatchSource = DataFrameSource | JsonlFileSource | IteratorSource
