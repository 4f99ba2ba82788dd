"""Simulation settings: what makes the local Batch API slow, faulty or strict."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from batch_assets.local_api.upstream import (
    BACKOFF_SECONDS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_SECONDS,
    UpstreamConfig,
    UpstreamRoutes,
)

# The steps of publishing a batch's files, in order: content checkpointed, a file's bytes moved
# into place, its file object recorded.
PublishingStep = Literal[
    "before_output", "output_placed", "after_output", "error_placed", "after_error"
]
# What a synchronous call can be answered with instead of its answer: that status in OpenAI's
# error envelope, or (`cut`) a connection closed without a byte of answer.
SyncFault = Literal["429", "503", "500", "cut"]

CLOCK_OFFSET_LIMIT_SECONDS = 100 * 365 * 86400


class Simulation(BaseModel):
    """Knobs set by command-line flags and changeable at runtime through `/admin/settings`."""

    # Infinity and NaN (which Python's JSON reader accepts) would break the clock and schedules.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    seconds_per_request: float = Field(0.0, ge=0, description="Simulated work per request.")
    answer_at_most: int | None = Field(
        None,
        ge=0,
        description="Answer at most this many requests of each batch, then keep it in_progress "
        "answering nothing until this setting is raised or cleared; None for no limit.",
    )
    window_seconds: float = Field(
        86400.0, gt=0, description='How long the "24h" completion window lasts here.'
    )
    fail_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of requests answered with an HTTP 500 error line."
    )
    enqueued_token_limit: int | None = Field(
        None, ge=1, description="Per model, across batches in flight; None for no limit."
    )
    http_error_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of /v1 calls answered 429 or 503."
    )
    retry_after_seconds: float = Field(
        1.0, ge=0, description="The retry-after sent with those 429 and 503 answers."
    )
    finalizing_seconds: float = Field(
        0.0, ge=0, description="How long a batch stays in `finalizing`."
    )
    timeout_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of requests answered with a request_timeout error."
    )
    cut_downloads_after_bytes: int | None = Field(
        None,
        ge=0,
        description="Cut the first download of each file after this many bytes; None never.",
    )
    stall_downloads_after_bytes: int | None = Field(
        None,
        ge=0,
        description="Send this many bytes of each download, then hold the rest until this "
        "setting is cleared; None never.",
    )
    create_delay_seconds: float = Field(
        0.0,
        ge=0,
        description="Hold POST /v1/batches this long before creating; dropped if the client goes.",
    )
    create_reply_delay_seconds: float = Field(
        0.0, ge=0, description="Hold the answer to POST /v1/batches this long after creating."
    )
    clock_offset_seconds: float = Field(
        0.0,
        # A century either way: timestamps stay within SQLite's integers.
        ge=-CLOCK_OFFSET_LIMIT_SECONDS,
        le=CLOCK_OFFSET_LIMIT_SECONDS,
        description="Added to the wall clock: moves expiry of files and batches forward.",
    )
    sync_timeout_seconds: float = Field(
        60.0, gt=0, description="How long a synchronous /v1 answer may take before a 504."
    )
    sync_seconds_per_request: float = Field(
        0.0,
        ge=0,
        description="Hold each synchronous /v1 answer (faults included) this long before it is "
        "sent, without taking a worker; lowering it releases held answers.",
    )
    sync_fault_queue: list[SyncFault] = Field(
        default_factory=list,
        description="Faults handed out first in first out, one to each synchronous /v1 call "
        "until the list is empty: 429 or 503 with retry-after, a 500, or `cut` (the connection "
        "is closed without an answer).",
    )
    sync_fail_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of synchronous /v1 calls (with no queued fault) answered 500.",
    )
    pause_publishing_at: PublishingStep | None = Field(
        None,
        description="Hold every batch's publishing of its output and error files at this step "
        "(to test a crash there); None never.",
    )
    upstream: list[str] = Field(
        default_factory=list,
        description="Send the batches' requests to these OpenAI-compatible servers: a base URL "
        "(the default) and MODEL=URL routes; empty: the local models answer.",
    )
    upstream_api_key_env: str | None = Field(
        None, description="The environment variable holding the upstreams' API key."
    )
    upstream_concurrency: int = Field(
        DEFAULT_CONCURRENCY, ge=1, description="Upstream requests in flight at most, in all."
    )
    upstream_timeout: float = Field(
        DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        description="Seconds one try of an upstream request may take.",
    )
    upstream_max_retries: int = Field(
        DEFAULT_MAX_RETRIES,
        ge=0,
        description="Tries after the first, on 429, 5xx and connection errors.",
    )
    upstream_backoff: float = Field(
        BACKOFF_SECONDS,
        ge=0,
        description="Seconds before the first retry of a 5xx or connection error without "
        "retry-after, doubled at each retry.",
    )

    @field_validator("upstream")
    @classmethod
    def _routes(cls, values: list[str]) -> list[str]:
        UpstreamRoutes.parse(values)  # raises ValueError naming the bad value
        return values

    def upstream_config(self) -> UpstreamConfig | None:
        """How to reach the upstreams; None without one."""
        if not self.upstream:
            return None
        return UpstreamConfig(
            routes=UpstreamRoutes.parse(self.upstream),
            api_key_env=self.upstream_api_key_env,
            concurrency=self.upstream_concurrency,
            timeout_seconds=self.upstream_timeout,
            max_retries=self.upstream_max_retries,
            backoff_seconds=self.upstream_backoff,
        )

    def now(self) -> float:
        """The server's clock: wall time plus the offset."""
        return time.time() + self.clock_offset_seconds
