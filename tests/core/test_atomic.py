"""Files are written whole or not at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from batch_assets.core.atomic import atomic_path, remove_orphaned_temporaries
from batch_assets.core.storage import write_parquet


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_finished_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "out.txt") as temporary:
        temporary.write_text("whole")
    (tmp_path / "plain.txt").write_text("plain")
    assert (tmp_path / "out.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


def test_write_parquet_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "t.parquet"
    write_parquet(pl.DataFrame({"a": [1]}), target)
    write_parquet(pl.DataFrame({"a": [2, 3]}), target)
    assert pl.read_parquet(target)["a"].to_list() == [2, 3]
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.parquet"]


CHILD_WRITES = {
    "atomic_path": (
        "from batch_assets.core.atomic import atomic_path\n"
        "with atomic_path(out / 'result.jsonl') as temporary:\n"
        "    temporary.write_text('half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(600)\n"
    ),
    "shard_requests": (
        "from batch_assets.core.sharding import shard_requests\n"
        "def requests():\n"
        "    for i in range(50_000):\n"
        "        yield {'custom_id': f'r{i}', 'method': 'POST', 'url': '/v1/embeddings',\n"
        "               'body': {'model': 'm', 'input': 'x' * 100}}\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(600)\n"
        "shard_requests(requests(), out, endpoint='/v1/embeddings')\n"
    ),
}


@pytest.mark.parametrize("writer", list(CHILD_WRITES))
def test_temporaries_of_a_killed_writer_are_removed_and_no_others(
    tmp_path: Path, writer: str
) -> None:
    preamble = "import sys, time\nfrom pathlib import Path\nout = Path(sys.argv[1])\n"
    code = preamble + CHILD_WRITES[writer]
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "writing\n"
    [alive] = [path for path in tmp_path.iterdir() if path.name.startswith(".")]
    assert remove_orphaned_temporaries(tmp_path) == []
    child.kill()
    child.wait()
    (tmp_path / ".keep").write_text("not a temporary")

    with atomic_path(tmp_path / "mine.jsonl") as mine:
        mine.write_text("this process is still writing")
        assert remove_orphaned_temporaries(tmp_path) == [alive]
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted([mine.name, ".keep"])
    assert (tmp_path / "mine.jsonl").read_text() == "this process is still writing"
