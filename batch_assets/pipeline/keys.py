"""Every tag, metadata key and environment variable the pipeline layer names, defined once."""

from __future__ import annotations

import hashlib

# Tags on assets and runs: the sensor finds a pipeline's assets by them, the run queue limits
# runs per pipeline by PIPELINE_TAG.
PIPELINE_TAG = "batch_assets/pipeline"
ROLE_TAG = "batch_assets/role"
RESOURCE_TAG = "batch_assets/resource"
SUBMISSION_ROLE = "submission"
DOWNLOAD_ROLE = "download"
RUN_KEY_TAG = "dagster/run_key"

# Keys the pipeline sets in each batch's metadata (the Batch API allows 16 keys in all).
PIPELINE_METADATA_KEY = "batch_assets_pipeline"
SHARD_KEY_METADATA_KEY = "batch_assets_shard_key"
SHARD_METADATA_KEY = "batch_assets_shard"
RETRY_OF_KEY = "batch_assets_retry_of"
ATTEMPT_KEY = "batch_assets_attempt"
BATCH_METADATA_KEYS = (
    PIPELINE_METADATA_KEY,
    SHARD_KEY_METADATA_KEY,
    SHARD_METADATA_KEY,
    RETRY_OF_KEY,
    ATTEMPT_KEY,
)
MAX_BATCH_METADATA_KEYS = 16
RESERVED_METADATA_KEYS = len(BATCH_METADATA_KEYS)

# The ledger (pipeline/ledger.py): keys of `<name>_batch` materializations, one per attempt, and
# of its observations, one per cancel request. Only the ledger writes and reads them.
LEDGER_BATCH_IDS = "batch_ids"
LEDGER_BATCHES = "batches"
LEDGER_ATTEMPT = "attempt"
LEDGER_RETRY_OF = "retry_of"
LEDGER_TOKEN_LIMIT_WAITS = "token_limit_waits"
LEDGER_REUSED_BATCHES = "reused_batches"
LEDGER_REUSED_UPLOADS = "reused_uploads"
LEDGER_REQUEST_COUNT = "request_count"
LEDGER_CANCEL_REQUESTED = "cancel_requested"
LEDGER_CANCEL_REQUESTED_BY_RUN = "cancel_requested_by_run"

DEFAULT_RESOURCE_KEY = "openai_batch"

# Environment variables.
STORAGE_DIR_VARIABLE = "BATCH_ASSETS_STORAGE_DIR"
INTERVAL_VARIABLE = "BATCH_ASSETS_SENSOR_INTERVAL_SECONDS"
BACKOFF_VARIABLE = "BATCH_ASSETS_TOKEN_LIMIT_BACKOFF_SECONDS"


def submission_run_key(batch_ids: list[str]) -> str:
    """One run key per submission, whatever order its batch ids come in."""
    digest = hashlib.sha256(",".join(sorted(batch_ids)).encode()).hexdigest()[:16]
    return f"batch-download-{digest}"
