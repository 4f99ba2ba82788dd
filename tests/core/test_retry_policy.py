"""Which errors are retried, and how attempts merge."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from batch_assets.core.retry_policy import merge_attempts, request_lines, retryable

ERRORS = pl.DataFrame(
    {
        "custom_id": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "status_code": [429, 500, 503, 400, None, None, None, None],
        "error_code": [
            None,
            None,
            None,
            "invalid",
            "batch_expired",
            "request_timeout",
            "batch_cancelled",
            "not_returned",
        ],
    },
    schema={"custom_id": pl.String, "status_code": pl.Int32, "error_code": pl.String},
)


@pytest.mark.parametrize(
    ("cancel_requested", "expected"),
    [(False, ["a", "b", "c", "e", "f", "g", "h"]), (True, ["a", "b", "c", "e", "f", "h"])],
)
def test_retryable_errors(cancel_requested: bool, expected: list[str]) -> None:
    mask = retryable(ERRORS, cancel_requested=cancel_requested)
    assert ERRORS.filter(mask)["custom_id"].to_list() == expected


def test_the_last_attempt_wins_and_attempts_are_counted() -> None:
    first = pl.DataFrame({"custom_id": ["a", "b", "c"], "status_code": [200, 500, 500]})
    second = pl.DataFrame({"custom_id": ["b", "c"], "status_code": [200, 500]})
    third = pl.DataFrame({"custom_id": ["c"], "status_code": [200]})
    merged = merge_attempts([first, second, third]).sort("custom_id")
    assert merged.to_dicts() == [
        {"custom_id": "a", "status_code": 200, "attempts": 1},
        {"custom_id": "b", "status_code": 200, "attempts": 2},
        {"custom_id": "c", "status_code": 200, "attempts": 3},
    ]


def test_request_lines_streams_the_original_lines(tmp_path: Path) -> None:
    shard = tmp_path / "shard.jsonl"
    lines = [
        json.dumps({"custom_id": f"r{i}", "body": {"x": "é"}}, ensure_ascii=False) for i in range(5)
    ]
    shard.write_text("\n".join(lines) + "\n", encoding="utf-8")
    picked = list(request_lines([shard], {"r1", "r3"}))
    assert picked == [lines[1].encode(), lines[3].encode()]
