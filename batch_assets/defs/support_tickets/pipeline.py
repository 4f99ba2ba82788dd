"""Summarise support tickets from a file of ready requests: the JSONL way in."""

from batch_assets.pipeline.factory import build_batch_pipeline
from batch_assets.pipeline.sources import JsonlFileSource
from batch_assets.project import DATA_DIR

defs = build_batch_pipeline(
    "support_ticket_summaries",
    JsonlFileSource(DATA_DIR / "support_ticket_requests.jsonl"),
    endpoint="/v1/chat/completions",
    group_name="support_tickets",
    metadata={"example": "support_tickets"},
    description="One-sentence summaries and next actions for support tickets.",
)
