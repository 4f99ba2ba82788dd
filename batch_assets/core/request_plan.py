"""What to submit of a validated request set: the requests the cache cannot answer, each distinct
request once, and the price of sending them.

Two streaming passes over the shard files: the first computes each request's cache key; a
vectorized join finds the answered ones in the cache and, among the rest, the first of each key
(the one sent); the second writes the lines to send into new shards and reads what the estimate
needs. The plan (every custom_id, its key, and the custom_id sent in its place) and the cached
answers are written beside the shards as Parquet, for the download step to fan answers out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
import polars as pl
from upath import UPath

from batch_assets.core import storage
from batch_assets.core.cost_estimate import (
    ModelEstimate,
    ModelUsage,
    RequestTotals,
    estimate_totals,
    request_features,
    request_token_counter,
)
from batch_assets.core.costs import ModelPrice, estimate_cost_usd
from batch_assets.core.limits import EMBEDDINGS, BatchLimits
from batch_assets.core.request_cache import (
    CACHE_KEY,
    CACHED,
    CACHED_AT,
    ENTRY_SCHEMA,
    RequestCache,
    request_key,
    with_provenance,
)
from batch_assets.core.request_validation import count_embedding_inputs
from batch_assets.core.sharding import Shard, ShardWriter

SENT_AS = "sent_as"  # the custom_id whose request is sent for this one (itself when sent)
PLAN_SCHEMA: dict[str, pl.DataType] = {
    "custom_id": pl.String(),
    CACHE_KEY: pl.String(),
    SENT_AS: pl.String(),
}
_decode = msgspec.json.decode


@dataclass(frozen=True)
class RequestPlan:
    """A validated request set, what of it goes to the Batch API, and what that costs."""

    shards: tuple[Shard, ...]  # the requests to submit (every request when nothing is folded)
    requests: int  # every request of the input
    cache_hits: int = 0  # answered from the cache: not sent
    duplicates_folded: int = 0  # the same request as one sent: answered with its answer
    plan_url: str | None = None  # Parquet, PLAN_SCHEMA: one row per request not answered
    cached_url: str | None = None  # Parquet: the cached answers, one row per cache hit
    saved_usd: float = 0.0  # what the cache hits cost when they were answered, at batch prices
    estimates: tuple[ModelEstimate, ...] = ()  # the forecast of the shards, per model
    sent_chars: Mapping[str, int] = field(default_factory=dict)  # line characters per model

    @property
    def submitted(self) -> int:
        """How many requests go to the Batch API."""
        return sum(shard.n_requests for shard in self.shards)

    @property
    def full_shards(self) -> bool:
        """Whether the cache was off: the shards hold every request, and there is no plan to
        fan answers out by, nor answers to store."""
        return self.plan_url is None


def _lines(url: str) -> Iterator[bytes]:
    """The lines of a shard file, streamed."""
    with storage.local_copy(url) as path, path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield line.rstrip(b"\n")


def shard_url_keys(url: str, endpoint: str) -> pl.DataFrame:
    """custom_id and cache key of every line of a shard file (columns custom_id, cache_key)."""
    custom_ids: list[str] = []
    keys: list[str] = []
    for line in _lines(url):
        request = _decode(line)
        custom_ids.append(request["custom_id"])
        keys.append(request_key(endpoint, request["body"]))
    return pl.DataFrame(
        {"custom_id": custom_ids, CACHE_KEY: keys},
        schema={"custom_id": pl.String, CACHE_KEY: pl.String},
    )


# What the plan and the estimate need of each line, worked out in one pass over a shard.
FACTS_SCHEMA: dict[str, pl.DataType] = {
    "custom_id": pl.String(),
    CACHE_KEY: pl.String(),
    "input_tokens": pl.Int64(),  # exact, by the model's tokenizer; null without one
    "max_output_tokens": pl.Int64(),  # null: the request sets no limit
    "chars": pl.Int64(),  # the line's characters with its line end
    "embedding_inputs": pl.Int64(),
}


def shard_facts(shard: Shard) -> pl.DataFrame:
    """Every line's custom_id, cache key and what its price depends on (FACTS_SCHEMA)."""
    endpoint = shard.endpoint
    counter = request_token_counter(shard.model or "", endpoint)
    count = None if counter is None else counter[0]
    embeddings = endpoint == EMBEDDINGS
    columns: dict[str, list[Any]] = {name: [] for name in FACTS_SCHEMA}
    custom_ids, keys, tokens = columns["custom_id"], columns[CACHE_KEY], columns["input_tokens"]
    limits, chars, inputs = (
        columns["max_output_tokens"],
        columns["chars"],
        columns["embedding_inputs"],
    )
    for line in _lines(shard.url):
        request = _decode(line)
        body = request["body"]
        features = request_features(endpoint, body)
        custom_ids.append(request["custom_id"])
        keys.append(request_key(endpoint, body))
        tokens.append(None if count is None else count(features))
        limits.append(features.max_output_tokens)
        chars.append(len(line.decode("utf-8")) + 1)
        inputs.append(count_embedding_inputs(body.get("input")) if embeddings else 0)
    return pl.DataFrame(columns, schema=FACTS_SCHEMA)


def _facts(shard: Shard, index: int, cache: RequestCache | None) -> pl.DataFrame:
    """A shard's facts, with its index and each line's row; worked out once per shard content
    when there is a cache (it keeps them by the shard's SHA-256 and model)."""
    kept = None if cache is None else cache.facts(shard.endpoint, shard.model or "", shard.sha256)
    facts = shard_facts(shard) if kept is None else kept
    if cache is not None and kept is None:
        cache.keep_facts(shard.endpoint, shard.model or "", shard.sha256, facts)
    return facts.with_columns(
        pl.lit(index, dtype=pl.Int32).alias("shard"),
        pl.lit(shard.model or "", dtype=pl.String).alias("model"),
        pl.int_range(facts.height, dtype=pl.Int64).alias("row"),
    )


def _all_facts(shards: Sequence[Shard], cache: RequestCache | None) -> pl.DataFrame:
    return pl.concat([_facts(shard, index, cache) for index, shard in enumerate(shards)])


def _estimates(
    sent: pl.DataFrame,
    endpoint: str,
    earlier: Mapping[str, ModelUsage],
    prices: Mapping[str, ModelPrice],
) -> tuple[ModelEstimate, ...]:
    """The forecast of the lines sent, per model, from their facts (vectorized sums)."""
    totals = sent.group_by("model").agg(
        pl.len().alias("requests"),
        pl.col("chars").sum(),
        pl.col("max_output_tokens").sum(),
        pl.col("max_output_tokens").null_count().alias("unlimited"),
        pl.col("input_tokens").sum(),
        pl.col("input_tokens").null_count().alias("uncounted"),
    )
    estimates = []
    for row in totals.sort("model").iter_rows(named=True):
        model = row["model"]
        counter = request_token_counter(model, endpoint)
        exact = counter is not None and row["uncounted"] == 0
        estimates.append(
            estimate_totals(
                model,
                endpoint,
                RequestTotals(
                    requests=row["requests"],
                    line_chars=row["chars"],
                    max_output_tokens=row["max_output_tokens"] or 0,
                    unlimited=row["unlimited"],
                    input_tokens=row["input_tokens"] if exact else None,
                    input_method=counter[1] if exact and counter is not None else None,
                ),
                earlier.get(model),
                prices,
            )
        )
    return tuple(estimates)


def _sent_chars(sent: pl.DataFrame) -> dict[str, int]:
    return {
        model: int(chars)
        for model, chars in sent.group_by("model").agg(pl.col("chars").sum()).iter_rows()
    }


def _write(
    shards: Sequence[Shard],
    sent: pl.DataFrame,
    counts: pl.DataFrame,
    out_dir: UPath,
    limits: BatchLimits,
) -> list[Shard]:
    """The shards to submit: a shard whose every line is sent as it is; the sent lines of the
    others written into new shards under `out_dir`."""
    whole = set(
        counts.join(sent.group_by("shard").len(), on="shard", how="inner")
        .filter(pl.col("len") == pl.col("lines"))["shard"]
        .to_list()
    )
    partial = sent.filter(~pl.col("shard").is_in(list(whole)))
    kept = [shard for index, shard in enumerate(shards) if index in whole]
    if partial.is_empty():
        return kept
    writer = ShardWriter(out_dir, endpoint=shards[0].endpoint, limits=limits)
    try:
        for rows in partial.partition_by("shard", maintain_order=True):
            shard = shards[rows["shard"][0]]
            wanted = set(rows["row"].to_list())
            lines = [
                line.decode("utf-8") for row, line in enumerate(_lines(shard.url)) if row in wanted
            ]
            series = pl.Series("line", lines, dtype=pl.String)
            writer.add_frame(
                pl.DataFrame(
                    {
                        "line": series,
                        "model": pl.repeat(shard.model, len(lines), dtype=pl.String, eager=True),
                        "n_bytes": series.str.len_bytes().cast(pl.Int64),
                        "embedding_inputs": rows["embedding_inputs"],
                    }
                )
            )
        return kept + writer.commit()
    except BaseException:
        writer.abort()
        raise


def _saved_usd(hits: pl.DataFrame, prices: Mapping[str, ModelPrice]) -> float:
    """What the cached answers cost when they were answered, at batch prices."""
    usage = hits.group_by("model").agg(pl.col("input_tokens").sum(), pl.col("output_tokens").sum())
    total = 0.0
    for model, input_tokens, output_tokens in usage.iter_rows():
        cost = estimate_cost_usd(model or "", input_tokens or 0, output_tokens or 0, prices)
        total += cost or 0.0
    return round(total, 6)


def estimate_only(
    shards: Sequence[Shard],
    *,
    endpoint: str,
    earlier: Mapping[str, ModelUsage] = {},
    prices: Mapping[str, ModelPrice],
) -> RequestPlan:
    """Every request sent as sharded (the cache off): only the price is worked out."""
    facts = _all_facts(shards, None)
    return RequestPlan(
        shards=tuple(shards),
        requests=facts.height,
        estimates=_estimates(facts, endpoint, earlier, prices),
        sent_chars=_sent_chars(facts),
    )


def _answered_by(facts: pl.DataFrame, hits: pl.DataFrame) -> tuple[pl.Series, pl.DataFrame]:
    """Which requests the entries `hits` answer, and those requests' custom_ids with their
    entries (one join: a stored entry's CACHED_AT is never null)."""
    requests = facts.select("custom_id", CACHE_KEY)
    if hits.height == 0:
        none = pl.repeat(False, facts.height, eager=True)
        return none, requests.clear().join(hits, on=CACHE_KEY, how="left").drop(CACHE_KEY)
    looked_up = requests.join(hits, on=CACHE_KEY, how="left")
    hit = looked_up[CACHED_AT].is_not_null()
    return hit, looked_up.filter(hit).drop(CACHE_KEY)


def plan_requests(
    shards: Sequence[Shard],
    out_dir: UPath,
    *,
    endpoint: str,
    limits: BatchLimits,
    cache: RequestCache,
    reuse: bool = True,
    max_age: timedelta | None = None,
    now: datetime | None = None,
    earlier: Mapping[str, ModelUsage] = {},
    prices: Mapping[str, ModelPrice],
) -> RequestPlan:
    """Look the requests up in `cache` (unless `reuse` is off: answers are then only stored),
    fold identical requests into the first of them, and shard the rest under `out_dir`."""
    facts = _all_facts(shards, cache)
    hits = (
        cache.lookup(facts[CACHE_KEY], max_age=max_age, now=now)
        if reuse
        else pl.DataFrame(schema=ENTRY_SCHEMA)
    )
    hit, cached = _answered_by(facts, hits)
    misses = facts.filter(~hit)
    first = misses[CACHE_KEY].is_first_distinct()
    sent = misses.filter(first)
    plan = misses.join(
        sent.select(CACHE_KEY, pl.col("custom_id").alias(SENT_AS)), on=CACHE_KEY, how="left"
    )
    counts = pl.DataFrame(
        {"shard": range(len(shards)), "lines": [shard.n_requests for shard in shards]},
        schema={"shard": pl.Int32, "lines": pl.UInt32},
    )
    submitted = _write(shards, sent, counts, out_dir, limits)
    plan_url = storage.write_parquet(plan.select(list(PLAN_SCHEMA)), out_dir / "plan.parquet")
    cached_url = storage.write_parquet(cached, out_dir / "cached.parquet")
    return RequestPlan(
        shards=tuple(submitted),
        requests=facts.height,
        cache_hits=cached.height,
        duplicates_folded=misses.height - sent.height,
        plan_url=plan_url,
        cached_url=cached_url,
        saved_usd=_saved_usd(cached, prices),
        estimates=_estimates(sent, endpoint, earlier, prices),
        sent_chars=_sent_chars(sent),
    )


def read_plan(plan: RequestPlan) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The plan (PLAN_SCHEMA) and the cached answers (custom_id and ENTRY_SCHEMA columns)."""
    if plan.plan_url is None or plan.cached_url is None:
        raise ValueError("the plan holds every request in its shards; nothing to read")
    return storage.read_parquet(plan.plan_url), storage.read_parquet(plan.cached_url)


def apply_plan(
    plan: RequestPlan | None, output: pl.DataFrame, errors: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The answers and errors of every request of the input: the sent ones as returned, each
    folded one with the answer (or error) of the request sent in its place, and the cache hits
    with their stored answer (`cached=true`, `cached_at`)."""
    output = with_provenance(output, cached=False)
    errors = with_provenance(errors, cached=False)
    if plan is None or plan.full_shards:
        return output, errors
    planned, cached = read_plan(plan)
    folded = planned.filter(pl.col("custom_id") != pl.col(SENT_AS)).select("custom_id", SENT_AS)

    def fan_out(frame: pl.DataFrame) -> pl.DataFrame:
        copies = folded.join(frame.rename({"custom_id": SENT_AS}), on=SENT_AS, how="inner")
        return pl.concat([frame, copies.select(frame.columns)])

    hits = cached.with_columns(pl.lit(True).alias(CACHED))
    answered = pl.concat([fan_out(output), hits], how="diagonal_relaxed").select(output.columns)
    return answered.cast(output.schema), fan_out(errors)


def planned_ids(plan: RequestPlan) -> pl.DataFrame:
    """Every custom_id of the input whose answer the plan gives without sending it: the folded
    ones and the cache hits (column `custom_id`)."""
    planned, cached = read_plan(plan)
    folded = planned.filter(pl.col("custom_id") != pl.col(SENT_AS)).select("custom_id")
    return pl.concat([folded, cached.select("custom_id")])
