"""The three guarantees every fault must leave standing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from openai import OpenAI

from batch_assets.pipeline.keys import SHARD_KEY_METADATA_KEY


def assert_each_custom_id_once(
    output: pl.DataFrame, errors: pl.DataFrame, custom_ids: Sequence[str]
) -> None:
    """Every input custom_id is in exactly one of output and errors."""
    returned = Counter(output["custom_id"].to_list() + errors["custom_id"].to_list())
    twice = sorted(custom_id for custom_id, count in returned.items() if count > 1)
    assert not twice, f"in output or errors more than once: {twice[:10]}"
    assert sorted(returned) == sorted(custom_ids)


def assert_no_shared_shard_key(client: OpenAI) -> None:
    """No two batches carry the same shard key, and no two uploads the same name."""
    batches = list(client.batches.list(limit=100))
    keys = Counter((batch.metadata or {}).get(SHARD_KEY_METADATA_KEY) for batch in batches)
    assert None not in keys, "a batch without a shard key"
    assert all(count == 1 for count in keys.values()), keys
    names = Counter(file.filename for file in client.files.list(purpose="batch"))
    assert all(count == 1 for count in names.values()), names


def assert_no_half_written_file(folder: Path) -> None:
    """No temporary file is left, every JSONL line is whole JSON, every Parquet file reads."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert files, f"nothing written under {folder}"
    for path in files:
        assert not path.name.startswith("."), f"temporary file left behind: {path}"
        if path.suffix == ".jsonl":
            data = path.read_bytes()
            assert data.endswith(b"\n"), f"{path} does not end with a whole line"
            for number, line in enumerate(data.splitlines(), start=1):
                assert isinstance(json.loads(line), dict), f"{path} line {number}"
        elif path.suffix == ".parquet":
            pl.read_parquet(path)
