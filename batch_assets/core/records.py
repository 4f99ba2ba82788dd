"""What one pipeline stage hands the next: small, picklable records of files and batches.

Files are named by URL (`s3://...`, `file:///...`), never by a path on one machine's disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from batch_assets.core.request_plan import RequestPlan


@dataclass(frozen=True)
class SubmittedBatch:
    """One shard uploaded and running as one batch."""

    batch_id: str
    input_file_id: str
    shard_key: str
    shard_url: str
    request_count: int
    model: str | None


@dataclass(frozen=True)
class Submission:
    """Every batch one materialization of a pipeline's batch asset created (or reused)."""

    pipeline: str
    endpoint: str
    host: str
    batches: tuple[SubmittedBatch, ...]
    plan: RequestPlan | None = None  # what the cache answered and folded; None before the cache
    # The running batches of the submission this one replaced, cancelled (`on_superseded`):
    # the download step stores what they finished in the cache.
    superseded: tuple[SubmittedBatch, ...] = ()

    @property
    def batch_ids(self) -> list[str]:
        """The batch ids, in shard order."""
        return [batch.batch_id for batch in self.batches]
