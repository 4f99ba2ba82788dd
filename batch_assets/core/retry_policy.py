"""Which failed requests to resubmit, and how attempts merge into one row per custom_id."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import polars as pl
from openai.types import Batch

from batch_assets.core.storage import Location, open_for_reading

TOKEN_LIMIT_CODE = "token_limit_exceeded"
RETRYABLE_CODES = frozenset({"batch_expired", "request_timeout", "not_returned"})
CANCELLED_CODE = "batch_cancelled"
ATTEMPTS_COLUMN = "attempts"


def retryable(errors: pl.DataFrame, *, cancel_requested: bool) -> pl.Series:
    """A mask of error rows worth resubmitting: 429, 5xx, expiry, timeouts, unasked cancels.

    A 4xx other than 429 is the request's own fault and is final.
    """
    codes = set(RETRYABLE_CODES) | (set() if cancel_requested else {CANCELLED_CODE})
    status = errors["status_code"]
    mask = (status == 429) | (status >= 500) | errors["error_code"].is_in(sorted(codes))
    return mask.fill_null(False).alias("retryable")


def merge_attempts(attempts: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """One row per custom_id: the row of its last attempt, with `attempts` counting them all.

    Each frame holds every row (answers and errors) that came back for one attempt, in order.
    """
    frames = [
        frame.with_columns(pl.lit(number, dtype=pl.Int32).alias("attempt"))
        for number, frame in enumerate(attempts, start=1)
    ]
    if not frames:
        raise ValueError("merge_attempts needs at least one attempt")
    combined = pl.concat(frames, how="vertical_relaxed")
    counts = combined.group_by("custom_id").agg(pl.len().cast(pl.Int32).alias(ATTEMPTS_COLUMN))
    last = combined.sort("attempt").unique("custom_id", keep="last", maintain_order=True)
    return last.join(counts, on="custom_id", how="left").drop("attempt")


def request_lines(shards: Iterable[Location], custom_ids: set[str]) -> Iterator[bytes]:
    """The original request lines of the given custom_ids, streamed from shard files."""
    remaining = set(custom_ids)
    for shard in shards:
        with open_for_reading(shard) as lines:
            for raw in lines:
                if not remaining:
                    return
                custom_id = json.loads(raw)["custom_id"]
                if custom_id in remaining:
                    remaining.discard(custom_id)
                    yield raw.rstrip(b"\r\n")


def hit_token_limit(batch: Batch) -> bool:
    """A batch that failed validation only because the enqueued-token limit was reached."""
    errors = batch.errors.data if batch.errors and batch.errors.data else []
    return (
        batch.status == "failed"
        and bool(errors)
        and all(error.code == TOKEN_LIMIT_CODE for error in errors)
    )
