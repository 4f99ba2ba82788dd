"""What one pipeline stage hands the next: small, picklable records of files and batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SubmittedBatch:
    """One shard uploaded and running as one batch."""

    batch_id: str
    input_file_id: str
    shard_key: str
    shard_path: Path
    request_count: int
    model: str | None


@dataclass(frozen=True)
class Submission:
    """Every batch one materialization of a pipeline's batch asset created (or reused)."""

    pipeline: str
    endpoint: str
    host: str
    batches: tuple[SubmittedBatch, ...]

    @property
    def batch_ids(self) -> list[str]:
        """The batch ids, in shard order."""
        return [batch.batch_id for batch in self.batches]


@dataclass(frozen=True)
class BatchResult:
    """Where a submission's results are: raw output and error files, and their parsed tables."""

    output_files: tuple[Path, ...]
    error_files: tuple[Path, ...]
    output_table: Path
    errors_table: Path
    batch_ids: tuple[str, ...] = field(default_factory=tuple)
