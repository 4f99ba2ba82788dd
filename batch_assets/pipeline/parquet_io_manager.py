"""`PolarsParquetIOManager`: polars frames stored as Parquet files, not pickles."""

from __future__ import annotations

import typing
from pathlib import Path

import dagster as dg
import polars as pl

from batch_assets.core.atomic import atomic_path, write_parquet


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Stores a `pl.DataFrame` or `pl.LazyFrame` at `<base_dir>/<asset key>.parquet`.

    A LazyFrame is sunk to the file in streaming fashion; an input annotated `pl.LazyFrame` (or
    `pl.LazyFrame | None`) is scanned lazily, any other input is read whole.
    """

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        *folders, name = context.asset_key.path
        return Path(self.base_dir, *folders, f"{name}.parquet")

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | pl.LazyFrame) -> None:
        path = self._path(context)
        if isinstance(obj, pl.LazyFrame):
            with atomic_path(path) as temporary:
                obj.sink_parquet(temporary)
        elif isinstance(obj, pl.DataFrame):
            write_parquet(obj, path)
        else:
            raise TypeError(
                f"{type(self).__name__} stores polars DataFrames and LazyFrames; "
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}"
            )
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame | pl.LazyFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no Parquet file at {path}; "
                "materialize it to write one"
            )
        annotation = context.dagster_type.typing_type
        if annotation is pl.LazyFrame or pl.LazyFrame in typing.get_args(annotation):
            return pl.scan_parquet(path)
        return pl.read_parquet(path)
