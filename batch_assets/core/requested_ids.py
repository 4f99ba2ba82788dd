"""The custom_ids a submission sent, read back from its shard files."""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from batch_assets.core import storage
from batch_assets.core.records import SubmittedBatch

_REQUESTED_SCHEMA = {"custom_id": pl.String, "batch_id": pl.String}


def _shard_ids(batch: SubmittedBatch) -> pl.DataFrame:
    """The custom_ids of one shard file, with its batch id."""
    with storage.local_copy(batch.shard_url) as path:
        try:
            ids = pl.read_ndjson(path, schema={"custom_id": pl.String}).select("custom_id")
        except pl.exceptions.ComputeError:  # an integer polars cannot read (beyond 128 bits,
            # which JSON and the Batch API allow): read the ids with `json` instead
            with path.open("rb") as lines:
                custom_ids = [json.loads(line)["custom_id"] for line in lines if line.strip()]
            ids = pl.DataFrame({"custom_id": custom_ids}, schema={"custom_id": pl.String})
    return ids.with_columns(batch_id=pl.lit(batch.batch_id))


def requested_ids(batches: Sequence[SubmittedBatch]) -> pl.DataFrame:
    """Every custom_id sent in `batches`, with the batch it went to."""
    if not batches:
        return pl.DataFrame(schema=_REQUESTED_SCHEMA)
    return pl.concat([_shard_ids(batch) for batch in batches])
