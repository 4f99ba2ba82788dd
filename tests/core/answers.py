"""Request bodies and parsed answer lines, as the request cache and plan tests build them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from batch_assets.core.output_parsing import RESULT_SCHEMA

CHAT = "/v1/chat/completions"
MINI = "gpt-4o-mini"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def body(text: str, model: str = MINI, **fields: Any) -> dict[str, Any]:
    """A chat request body asking `text`, with any other `fields`."""
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def result(custom_id: str, answer: str | None, status: int | None = 200) -> dict[str, Any]:
    """One parsed result line (RESULT_SCHEMA): an answer of 1,000 input and 500 output tokens,
    or a server error when `status` is not 200."""
    row: dict[str, Any] = dict.fromkeys(RESULT_SCHEMA)
    row.update(custom_id=custom_id, status_code=status, model=MINI, answer=answer)
    row.update(batch_id="batch_1", batch_request_id=f"br-{custom_id}")
    if status == 200:
        row.update(input_tokens=1000, output_tokens=500, total_tokens=1500)
    else:
        row.update(error_code="server_error", error_message="it failed")
    return row


def results(*rows: dict[str, Any]) -> pl.DataFrame:
    """Parsed result lines as a frame."""
    return pl.DataFrame(list(rows), schema=RESULT_SCHEMA)
