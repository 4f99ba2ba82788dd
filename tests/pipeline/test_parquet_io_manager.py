"""`PolarsParquetIOManager`: frames go to Parquet files and come back, eagerly or lazily."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.parquet_io_manager import PolarsParquetIOManager
from batch_assets.pipeline.sources import IteratorSource

FRAME = pl.DataFrame({"custom_id": ["a", "b", "c"], "answer": ["x", None, "é"]})


@dg.asset(key_prefix=["team"], io_manager_key="tables")
def eager_table() -> pl.DataFrame:
    return FRAME


@dg.asset(io_manager_key="tables")
def lazy_table() -> pl.LazyFrame:
    return FRAME.lazy().with_columns(pl.col("answer").fill_null("-"))


@dg.asset(io_manager_key="tables")
def both_tables(eager_table: pl.DataFrame, lazy_table: pl.LazyFrame) -> pl.DataFrame:
    assert isinstance(eager_table, pl.DataFrame) and isinstance(lazy_table, pl.LazyFrame)
    return eager_table.join(lazy_table.collect(), on="custom_id", suffix="_filled")


@dg.asset(io_manager_key="tables")
def optional_lazy_input(lazy_table: pl.LazyFrame | None) -> pl.LazyFrame:
    assert isinstance(lazy_table, pl.LazyFrame)
    return lazy_table.select(pl.len())


@dg.asset(io_manager_key="tables")
def not_a_table() -> dict[str, int]:
    return {"rows": 3}


def test_frames_round_trip_through_parquet_files(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [eager_table, lazy_table, both_tables, optional_lazy_input],
            instance=instance,
            resources={"tables": PolarsParquetIOManager(base_dir=str(tmp_path))},
        )
        metadata = instance.get_latest_materialization_event(
            dg.AssetKey(["team", "eager_table"])
        ).asset_materialization.metadata

    assert result.success
    assert metadata["path"].value == (tmp_path / "team" / "eager_table.parquet").as_uri()
    assert pl.read_parquet(tmp_path / "team" / "eager_table.parquet").equals(FRAME)
    assert pl.read_parquet(tmp_path / "lazy_table.parquet")["answer"].to_list() == ["x", "-", "é"]
    assert result.output_for_node("both_tables")["answer_filled"].to_list() == ["x", "-", "é"]
    assert sorted(path.name for path in tmp_path.rglob("*")) == [
        "both_tables.parquet",
        "eager_table.parquet",
        "lazy_table.parquet",
        "optional_lazy_input.parquet",
        "team",
    ]


def test_an_input_never_materialized_is_named_with_its_path(tmp_path: Path) -> None:
    missing = re.escape((tmp_path / "lazy_table.parquet").as_uri())
    with pytest.raises(FileNotFoundError, match=f"lazy_table has no Parquet file at {missing}"):
        dg.materialize(
            [lazy_table, optional_lazy_input],
            selection=[optional_lazy_input],
            resources={"tables": PolarsParquetIOManager(base_dir=str(tmp_path))},
        )


def test_a_value_that_is_not_a_frame_is_refused_naming_the_asset(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not_a_table returned dict"):
        dg.materialize(
            [not_a_table], resources={"tables": PolarsParquetIOManager(base_dir=str(tmp_path))}
        )
    assert list(tmp_path.rglob("*")) == []


def test_the_factory_brings_its_own_io_manager_unless_told_otherwise(tmp_path: Path) -> None:
    source = IteratorSource(lambda: iter(()))
    own = build_batch_pipeline("own", source, storage_dir=tmp_path)
    manager = own.resources["own_io_manager"]
    assert isinstance(manager, PolarsParquetIOManager)
    assert manager.base_dir == str(tmp_path / "own" / "tables")

    shared = build_batch_pipeline("shared", source, io_manager_key="warehouse")
    assert set(shared.resources or {}) == {"shared_records_io_manager"}
    key = dg.AssetKey("shared_errors")
    (download,) = [a for a in shared.assets if key in getattr(a, "keys", ())]
    assert download.get_io_manager_key_for_asset_key(key) == "warehouse"
