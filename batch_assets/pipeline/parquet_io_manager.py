"""`PolarsParquetIOManager`: polars frames stored as Parquet files, not pickles, on any storage."""

from __future__ import annotations

import typing
from typing import cast
from urllib.parse import quote

import dagster as dg
import polars as pl
from upath import UPath

from batch_assets.core import storage


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores a `pl.DataFrame` or `pl.LazyFrame` at `<base_dir>/<asset key>.parquet`, and a
    partition at `<base_dir>/<asset key>/<partition key>.parquet`.

    `base_dir` is a path or a URL (`s3://bucket/prefix`, ...). Files appear whole or not at all.
    A LazyFrame is sunk to the file in streaming fashion; an input annotated `pl.LazyFrame` (or
    `pl.LazyFrame | None`) is scanned lazily from local disk, any other input is read whole. An
    input of several partitions is their files, one after the other.
    """

    base_dir: str

    def _path(self, asset_key: dg.AssetKey, partition: str | None) -> UPath:
        *folders, name = asset_key.path
        root = storage.storage_location(self.base_dir, setting="base_dir").joinpath(*folders)
        if partition is None:
            return root / f"{name}.parquet"
        return root / name / f"{quote(partition, safe='')}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._path(context.asset_key, partition)
        if isinstance(obj, pl.LazyFrame):
            url = storage.sink_parquet(obj, path)
        elif isinstance(obj, pl.DataFrame):
            url = storage.write_parquet(obj, path)
        else:
            raise TypeError(
                f"{type(self).__name__} stores polars DataFrames and LazyFrames; "
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}"
            )
        context.add_output_metadata({"path": dg.MetadataValue.path(url)})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        partitions: list[str | None] = (
            list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        )
        paths = [self._path(context.asset_key, partition) for partition in partitions]
        for path in paths:
            if not storage.exists(path):
                raise FileNotFoundError(
                    f"{context.asset_key.to_user_string()} has no Parquet file at "
                    f"{storage.url_of(path)}; materialize it to write one"
                )
        annotation = context.dagster_type.typing_type
        lazy = annotation is pl.LazyFrame or pl.LazyFrame in typing.get_args(annotation)
        frames = [self._read(path, lazy=lazy) for path in paths]
        if lazy:
            return pl.concat(cast(list[pl.LazyFrame], frames), how="vertical_relaxed")
        return pl.concat(cast(list[pl.DataFrame], frames), how="vertical_relaxed")

    @staticmethod
    def _read(path: UPath, *, lazy: bool) -> pl.DataFrame | pl.LazyFrame:
        """One file, scanned lazily from local disk where asked, else read whole."""
        if lazy:
            if storage.is_local(path):
                return pl.scan_parquet(storage.local_path(path))
            return storage.read_parquet(path).lazy()
        return storage.read_parquet(path)
