"""Markdown previews of the first rows an asset holds, for the UI."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from batch_assets.core import storage
from batch_assets.core.sharding import Shard

PREVIEW_ROWS = 5
PREVIEW_CHARS = 80


def _cell(value: object) -> str:
    """A value as one table cell: on one line, pipes escaped, cut short."""
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table of `rows` under the header `columns`."""
    lines = [f"| {' | '.join(columns)} |", f"|{' --- |' * len(columns)}"]
    lines += [f"| {' | '.join(_cell(value) for value in row)} |" for row in rows]
    return "\n".join(lines)


def frame_preview(frame: pl.DataFrame, columns: Sequence[str]) -> str:
    """The first rows of `frame`, in `columns`."""
    return markdown_table(columns, frame.head(PREVIEW_ROWS).select(columns).iter_rows())


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


def requests_preview(shards: Sequence[Shard]) -> str:
    """The first requests of the first shard: custom_id, model and prompt."""
    rows: list[tuple[object, ...]] = []
    if shards:
        with storage.open_for_reading(shards[0].url) as lines:
            for _, raw in zip(range(PREVIEW_ROWS), lines, strict=False):
                request = json.loads(raw)
                body = request.get("body") or {}
                rows.append((request.get("custom_id"), body.get("model", ""), _prompt(body)))
    return markdown_table(["custom_id", "model", "prompt"], rows)
