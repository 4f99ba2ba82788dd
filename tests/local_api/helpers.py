"""Small steps the local Batch API tests share."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from openai import OpenAI
from openai.types import Batch, FileObject

from batch_assets.local_api.store import Store
from tests.local_api_server import wait_for

# The JSON schema of the pipeline's end_to_end benchmark (benchmarks/pipeline_bench.py).
SENTIMENT_SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "topics": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sentiment", "topics"],
    "additionalProperties": False,
}

TERMINAL_STATUSES = {"completed", "failed", "expired", "cancelled"}
REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")
"""OpenAI's `x-request-id` and an output line's `response.request_id`."""


def chat_request(custom_id: str, text: str = "What is 2+2?", model: str = "gpt-4o-mini") -> dict:
    """One chat-completions request line."""
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    }


def jsonl(lines: list[Any]) -> bytes:
    """Lines as JSONL bytes; str items are written as they are."""
    return b"".join(
        (line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines
    )


def upload(client: OpenAI, lines: list[Any], name: str = "requests.jsonl") -> FileObject:
    """Upload request lines as a batch input file."""
    return client.files.create(file=(name, jsonl(lines)), purpose="batch")


def submit(
    client: OpenAI, lines: list[Any], endpoint: str = "/v1/chat/completions", **options: Any
) -> Batch:
    """Upload request lines and create a batch on them."""
    input_file = upload(client, lines)
    return client.batches.create(
        input_file_id=input_file.id, endpoint=endpoint, completion_window="24h", **options
    )


def wait_until_done(client: OpenAI, batch_id: str, timeout: float = 60.0) -> Batch:
    """Poll a batch until it reaches a terminal status."""
    return wait_for(
        lambda: (batch := client.batches.retrieve(batch_id)).status in TERMINAL_STATUSES and batch,
        timeout=timeout,
    )


def read_lines(client: OpenAI, file_id: str | None) -> list[dict]:
    """The parsed lines of an output or error file (none when there is no file)."""
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def ids_and_rest(body: Any) -> tuple[list[str], Any]:
    """The object ids in an answer (every `id` and `call_id`, at any depth) and the rest of it."""
    found: list[str] = []

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            found.extend(value[key] for key in ("id", "call_id") if key in value)
            return {k: strip(v) for k, v in value.items() if k not in ("id", "call_id")}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    rest = strip(body)
    return found, rest


def add_validating_batch(
    store: Store, folder: Path, batch_id: str, requests: list[dict[str, Any]]
) -> None:
    """Put a batch of `requests` in `store`, as the API creates it, for an engine to take on."""
    source = folder / "input.jsonl"
    source.write_bytes(jsonl(requests))
    store.add_file({"id": "file-in", "purpose": "batch", "expires_at": None}, source)
    batch = {
        "id": batch_id,
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in",
        "status": "validating",
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
    }
    progress = {
        "deadline": time.time() + 86400,
        "total": 0,
        "line": 0,
        "offset": 0,
        "output_bytes": 0,
        "error_bytes": 0,
        "output_expires_after": None,
    }
    store.add_batch(batch, progress)
