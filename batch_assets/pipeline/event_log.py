"""Reading an asset's events from the Dagster event log, page by page."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import dagster as dg

RECORDS_PER_PAGE = 1000

EventFetch = Callable[..., dg.EventRecordsResult]


def records_after(
    fetch: EventFetch, key: dg.AssetKey, after: int, partitions: Sequence[str] | None = None
) -> Iterator[dg.EventLogRecord]:
    """Every record of `key` (of `partitions`, if given) stored after the storage id `after`,
    oldest first."""
    while True:
        records = fetch(
            dg.AssetRecordsFilter(
                asset_key=key, asset_partitions=partitions, after_storage_id=after or None
            ),
            limit=RECORDS_PER_PAGE,
            ascending=True,
        ).records
        yield from records
        if len(records) < RECORDS_PER_PAGE:
            return
        after = records[-1].storage_id


def records_newest_first(
    fetch: EventFetch, key: dg.AssetKey, partitions: Sequence[str] | None = None
) -> Iterator[dg.EventLogRecord]:
    """Every record of `key` (of `partitions`, if given), newest first; stop reading when the
    caller stops."""
    records_filter = dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions)
    cursor = None
    while True:
        page = fetch(records_filter, limit=RECORDS_PER_PAGE, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor
