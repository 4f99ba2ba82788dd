"""Settings the pipeline layer reads from the environment, each with its default."""

from __future__ import annotations

import os

from batch_assets.pipeline.keys import BACKOFF_VARIABLE, INTERVAL_VARIABLE

DEFAULT_SENSOR_INTERVAL_SECONDS = 30
DEFAULT_TOKEN_LIMIT_BACKOFF_SECONDS = 60.0


def sensor_interval_seconds() -> int:
    """The sensor's minimum interval, from $BATCH_ASSETS_SENSOR_INTERVAL_SECONDS."""
    return int(os.environ.get(INTERVAL_VARIABLE) or DEFAULT_SENSOR_INTERVAL_SECONDS)


def token_limit_backoff_seconds() -> float:
    """The first wait after a token-limit failure ($BATCH_ASSETS_TOKEN_LIMIT_BACKOFF_SECONDS)."""
    return float(os.environ.get(BACKOFF_VARIABLE) or DEFAULT_TOKEN_LIMIT_BACKOFF_SECONDS)
