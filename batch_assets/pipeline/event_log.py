"""Reading an asset's events from the Dagster event log, page by page."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dagster as dg

RECORDS_PER_PAGE = 1000

EventFetch = Callable[..., dg.EventRecordsResult]


def records_after(fetch: EventFetch, key: dg.AssetKey, after: int) -> Iterator[dg.EventLogRecord]:
    """Every record of `key` stored after the storage id `after`, oldest first."""
    while True:
        records = fetch(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after or None),
            limit=RECORDS_PER_PAGE,
            ascending=True,
        ).records
        yield from records
        if len(records) < RECORDS_PER_PAGE:
            return
        after = records[-1].storage_id


def records_newest_first(fetch: EventFetch, key: dg.AssetKey) -> Iterator[dg.EventLogRecord]:
    """Every record of `key`, newest first; stop reading when the caller stops."""
    cursor = None
    while True:
        page = fetch(key, limit=RECORDS_PER_PAGE, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor
