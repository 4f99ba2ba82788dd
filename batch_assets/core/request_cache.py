"""The request cache: the answer to every request a finished batch answered, keyed by what was
asked (the endpoint and the canonical request body, `custom_id` left out).

Entries live in Parquet segments under the cache's folder (local disk or an object store), one
segment per finished submission, each written whole (atomically) once and never rewritten, so an
entry keeps the time it was first stored; a lookup is one semi-join per segment, and the newest
entry of a key wins. Failed requests are never stored, nor answers cut short (finish_reason
`length`, `max_output_tokens`, `content_filter`): a later run asks again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import polars as pl
from upath import UPath

from batch_assets.core import storage
from batch_assets.core.output_parsing import ANSWERED_STATUS, RESULT_SCHEMA

CACHE_KEY = "cache_key"
CACHED_AT = "cached_at"
CACHED = "cached"
# Answers that stopped before their end: not worth keeping.
UNFINISHED = ("length", "max_output_tokens", "content_filter")
SEGMENT_SUFFIX = ".parquet"
# Bump when `request_key` or the token counts change: kept facts of shards are then worked anew.
FACTS_VERSION = 1
# The columns of an entry: the key, and the parsed answer line (its custom_id aside).
ENTRY_SCHEMA: dict[str, pl.DataType] = {
    CACHE_KEY: pl.String(),
    **{name: dtype for name, dtype in RESULT_SCHEMA.items() if name != "custom_id"},
    CACHED_AT: pl.Datetime("us", "UTC"),
}
# What `<name>_output` and `<name>_errors` add to each parsed line: whether the answer came from
# the cache, and when it was stored (its batch_id and batch_request_id say where from).
PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    CACHED: pl.Boolean(),
    CACHED_AT: pl.Datetime("us", "UTC"),
}

_encode = msgspec.json.Encoder(order="sorted").encode


def canonical_body(body: Any) -> bytes:
    """The body as compact JSON with every object's keys sorted: equal bodies, equal bytes."""
    try:
        return _encode(body)
    except (TypeError, OverflowError):  # a value msgspec will not write: json's canonical form
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_key(endpoint: str, body: Any) -> str:
    """The cache key of a request: a 128-bit hash of its endpoint and canonical body."""
    data = endpoint.encode() + b"\n" + canonical_body(body)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def with_provenance(frame: pl.DataFrame, *, cached: bool) -> pl.DataFrame:
    """Parsed result lines with the provenance columns: fresh answers are `cached=false`."""
    return frame.with_columns(
        pl.lit(cached, dtype=pl.Boolean).alias(CACHED),
        pl.lit(None, dtype=PROVENANCE_SCHEMA[CACHED_AT]).alias(CACHED_AT),
    )


class RequestCache:
    """The answers stored under one folder: `segments/<name>.parquet`, one per submission."""

    def __init__(self, root: UPath) -> None:
        self.root = root

    @property
    def segments_dir(self) -> UPath:
        """Where the segments are."""
        return self.root / "segments"

    def _facts_file(self, endpoint: str, model: str, sha256: str) -> UPath:
        text = f"{FACTS_VERSION}\n{endpoint}\n{model}\n{sha256}"
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        return self.root / "facts" / f"{digest}{SEGMENT_SUFFIX}"

    def facts(self, endpoint: str, model: str, sha256: str) -> pl.DataFrame | None:
        """What `keep_facts` kept of the shard with this content, if anything: the same bytes,
        the same keys and token counts."""
        path = self._facts_file(endpoint, model, sha256)
        return storage.read_parquet(path) if storage.exists(path) else None

    def keep_facts(self, endpoint: str, model: str, sha256: str, facts: pl.DataFrame) -> None:
        """Keep a shard's keys and token counts, by its content, for the next run."""
        storage.write_parquet(facts, self._facts_file(endpoint, model, sha256))

    def segment(self, name: str) -> UPath:
        """Where segment `name` is (whether or not it exists)."""
        return self.segments_dir / f"{name}{SEGMENT_SUFFIX}"

    def segments(self) -> list[UPath]:
        """Every finished segment, oldest name first."""
        if not storage.exists(self.segments_dir):
            return []
        return sorted(
            (path for path in self.segments_dir.iterdir() if path.name.endswith(SEGMENT_SUFFIX)),
            key=lambda path: path.name,
        )

    def lookup(
        self, keys: pl.Series, *, max_age: timedelta | None = None, now: datetime | None = None
    ) -> pl.DataFrame:
        """The newest entry of each of `keys` stored within `max_age` (ENTRY_SCHEMA columns)."""
        wanted = pl.DataFrame({CACHE_KEY: keys}).lazy()  # a semi join needs no unique keys
        oldest = None if max_age is None else (now or datetime.now(UTC)) - max_age
        found: list[pl.DataFrame] = []
        for segment in self.segments():
            try:
                with storage.local_copy(segment) as path:
                    entries = pl.scan_parquet(path).join(wanted, on=CACHE_KEY, how="semi")
                    if oldest is not None:
                        entries = entries.filter(pl.col(CACHED_AT) >= oldest)
                    found.append(entries.collect())
            except FileNotFoundError:  # removed meanwhile: its keys are only misses
                continue
        if not found:
            return pl.DataFrame(schema=ENTRY_SCHEMA)
        if len(found) == 1:  # one segment: a key's entries (if more than one) are as new
            return found[0].select(list(ENTRY_SCHEMA)).unique(CACHE_KEY, keep="any")
        return (
            pl.concat(found, how="diagonal_relaxed")
            .select(list(ENTRY_SCHEMA))
            .sort(CACHED_AT)
            .unique(CACHE_KEY, keep="last", maintain_order=False)
        )

    def store(self, answered: pl.DataFrame, keys: pl.DataFrame, name: str) -> int:
        """Store the answered lines of one submission (joined to their requests' keys by
        custom_id) as segment `name`, unless it is stored already; how many were stored."""
        if storage.exists(self.segment(name)):
            return 0
        finished = pl.col("finish_reason").is_null() | ~pl.col("finish_reason").is_in(UNFINISHED)
        entries = (
            answered.filter((pl.col("status_code") == ANSWERED_STATUS) & finished)
            .join(keys.select("custom_id", CACHE_KEY), on="custom_id", how="inner")
            .unique(CACHE_KEY, keep="first", maintain_order=True)
            .with_columns(pl.lit(datetime.now(UTC), dtype=ENTRY_SCHEMA[CACHED_AT]).alias(CACHED_AT))
            .select(list(ENTRY_SCHEMA))
            .cast(ENTRY_SCHEMA)  # type: ignore[arg-type]
        )
        if entries.height:
            storage.write_parquet(entries, self.segment(name))
        return entries.height
