"""Files are written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from batch_assets.core.atomic import atomic_path, write_parquet


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_write_parquet_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "t.parquet"
    write_parquet(pl.DataFrame({"a": [1]}), target)
    write_parquet(pl.DataFrame({"a": [2, 3]}), target)
    assert pl.read_parquet(target)["a"].to_list() == [2, 3]
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.parquet"]
