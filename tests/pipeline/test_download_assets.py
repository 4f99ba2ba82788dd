"""Token usage and cost come from `Batch.usage`, or from the output lines when it is missing."""

from __future__ import annotations

import polars as pl
from openai.types import Batch

from batch_assets.core.output_parsing import empty_results
from batch_assets.pipeline.download_assets import token_usage


def _batch(batch_id: str, usage: dict | None) -> Batch:
    return Batch.model_validate(
        {
            "id": batch_id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "model": "gpt-4o-mini",
            "input_file_id": "file-1",
            "completion_window": "24h",
            "status": "completed",
            "created_at": 1,
            "usage": usage,
        }
    )


def _lines(batch_id: str, tokens: list[tuple[int, int]]) -> pl.DataFrame:
    rows = pl.DataFrame(
        {
            "custom_id": [f"{batch_id}-{i}" for i in range(len(tokens))],
            "batch_id": [batch_id] * len(tokens),
            "model": ["gpt-4o-mini"] * len(tokens),
            "input_tokens": [i for i, _ in tokens],
            "output_tokens": [o for _, o in tokens],
        }
    )
    return pl.concat([empty_results(), rows], how="diagonal_relaxed")


def test_batch_usage_wins_and_lines_fill_in_where_it_is_missing() -> None:
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 140,
    }
    batches = [_batch("b1", usage), _batch("b2", None)]
    output = pl.concat([_lines("b1", [(1, 1)]), _lines("b2", [(10, 3), (20, 4)])])

    assert token_usage(batches, output) == [("gpt-4o-mini", 100, 40), ("gpt-4o-mini", 30, 7)]
