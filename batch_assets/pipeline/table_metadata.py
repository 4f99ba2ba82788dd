"""What the UI shows of a table: Dagster's standard row count and column schema, and previews
of the first rows as table metadata."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
import polars as pl

from batch_assets.core import storage
from batch_assets.core.sharding import Shard
from batch_assets.pipeline.keys import COLUMN_SCHEMA_KEY, PREVIEW_KEY, ROW_COUNT_KEY

PREVIEW_ROWS = 5
PREVIEW_CHARS = 80


def column_schema(schema: pl.Schema) -> dg.TableSchema:
    """A polars schema as Dagster's table schema."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    )


def frame_metadata(frame: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    """`dagster/row_count` and `dagster/column_schema` of a frame."""
    return {
        ROW_COUNT_KEY: dg.MetadataValue.int(frame.height),
        COLUMN_SCHEMA_KEY: dg.MetadataValue.table_schema(column_schema(frame.schema)),
    }


def _cell(value: object) -> str | int | float | bool | None:
    """A value as one table cell: scalars as they are, anything else as text cut short."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def preview_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> dg.MetadataValue:
    """`rows` under `columns`, as table metadata, under the key `preview`."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({name: _cell(value) for name, value in zip(columns, row, strict=True)})
            for row in rows
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(name) for name in columns]),
    )


def frame_preview(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, dg.MetadataValue]:
    """The first rows of `frame`, in `columns`."""
    return {PREVIEW_KEY: preview_table(columns, frame.head(PREVIEW_ROWS).select(columns).rows())}


def _prompt(body: dict[str, Any]) -> str:
    """The last text a request sends."""
    texts: list[str] = []
    for message in body.get("messages") or []:
        if isinstance(message.get("content"), str):
            texts.append(message["content"])
    for key in ("input", "prompt"):
        value = body.get(key)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list) and value and isinstance(value[-1], str):
            texts.append(value[-1])
    return texts[-1] if texts else ""


def requests_preview(shards: Sequence[Shard]) -> dict[str, dg.MetadataValue]:
    """The first requests of the first shard: custom_id, model and prompt."""
    rows: list[tuple[object, ...]] = []
    if shards:
        with storage.open_for_reading(shards[0].url) as lines:
            for _, raw in zip(range(PREVIEW_ROWS), lines, strict=False):
                request = json.loads(raw)
                body = request.get("body") or {}
                rows.append((request.get("custom_id"), body.get("model", ""), _prompt(body)))
    return {PREVIEW_KEY: preview_table(["custom_id", "model", "prompt"], rows)}
