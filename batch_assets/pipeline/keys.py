"""Every tag, metadata key and environment variable the pipeline layer names, defined once."""

from __future__ import annotations

import hashlib

# Tags on assets and runs: the sensor finds a pipeline's assets by them, the run queue limits
# runs per pipeline by PIPELINE_TAG.
TAG_PREFIX = "batch_assets/"
PIPELINE_TAG = f"{TAG_PREFIX}pipeline"
ROLE_TAG = f"{TAG_PREFIX}role"
RESOURCE_TAG = f"{TAG_PREFIX}resource"
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

# Metadata keys Dagster and its integrations define: the UI, Insights and catalogs read them.
ROW_COUNT_KEY = "dagster/row_count"
COLUMN_SCHEMA_KEY = "dagster/column_schema"
PREVIEW_KEY = "preview"
# Token usage under the keys dagster-openai uses, so Dagster+ Insights charts them.
OPENAI_CALLS_KEY = "openai.calls"
OPENAI_PROMPT_TOKENS_KEY = "openai.prompt_tokens"
OPENAI_COMPLETION_TOKENS_KEY = "openai.completion_tokens"
OPENAI_TOTAL_TOKENS_KEY = "openai.total_tokens"
COST_KEY = "estimated_cost_usd"

# The request cache and the price before submitting (`<name>_requests`, `<name>_output`).
CACHE_HITS_KEY = "cache_hits"
CACHE_MISSES_KEY = "cache_misses"
DUPLICATES_FOLDED_KEY = "duplicates_folded"
CACHE_SAVED_KEY = "cache_saved_usd"
COST_ESTIMATE_KEY = "cost_estimate_usd"
COST_ESTIMATE_TABLE_KEY = "cost_estimate"
ESTIMATE_VS_ACTUAL_KEY = "estimate_vs_actual"
USAGE_BY_MODEL_KEY = "usage_by_model"
BUDGET_KEY = "max_cost_usd"
COST_APPROVED_KEY = "cost_approved_usd"
# A run tag that approves one run above `max_cost_usd`, up to the dollars it names.
APPROVE_COST_TAG = f"{TAG_PREFIX}approve_cost_usd"

# Environment variables.
STORAGE_DIR_VARIABLE = "BATCH_ASSETS_STORAGE_DIR"
INTERVAL_VARIABLE = "BATCH_ASSETS_SENSOR_INTERVAL_SECONDS"
BACKOFF_VARIABLE = "BATCH_ASSETS_TOKEN_LIMIT_BACKOFF_SECONDS"


def submission_run_key(batch_ids: list[str]) -> str:
    """One run key per submission, whatever order its batch ids come in."""
    digest = hashlib.sha256(",".join(sorted(batch_ids)).encode()).hexdigest()[:16]
    return f"batch-download-{digest}"
