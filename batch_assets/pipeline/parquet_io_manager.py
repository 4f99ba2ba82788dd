"""`PolarsParquetIOManager`: polars frames stored as Parquet files, not pickles, on any storage."""

from __future__ import annotations

import typing

import dagster as dg
import polars as pl
from upath import UPath

from batch_assets.core import storage


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores a `pl.DataFrame` or `pl.LazyFrame` at `<base_dir>/<asset key>.parquet`.

    `base_dir` is a path or a URL (`s3://bucket/prefix`, ...). Files appear whole or not at all.
    A LazyFrame is sunk to the file in streaming fashion; an input annotated `pl.LazyFrame` (or
    `pl.LazyFrame | None`) is scanned lazily from local disk, any other input is read whole.
    """

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> UPath:
        *folders, name = context.asset_key.path
        return storage.storage_location(self.base_dir, setting="base_dir").joinpath(
            *folders, f"{name}.parquet"
        )

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        path = self._path(context)
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
        path = self._path(context)
        if not storage.exists(path):
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no Parquet file at "
                f"{storage.url_of(path)}; materialize it to write one"
            )
        annotation = context.dagster_type.typing_type
        if annotation is pl.LazyFrame or pl.LazyFrame in typing.get_args(annotation):
            if storage.is_local(path):
                return pl.scan_parquet(storage.local_path(path))
            return storage.read_parquet(path).lazy()
        return storage.read_parquet(path)
