"""The completion sensor's cursor: where it has read the ledgers to, and what is still in flight."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """Request counts and batch statuses of one attempt, summed over its batches."""

    total: int
    completed: int
    failed: int
    statuses: tuple[str, ...]


@dataclass
class PendingAttempt:
    """An attempt whose download run the sensor has not asked for yet."""

    pipeline: str
    batch_ids: list[str]
    token_limit_waits: int = 0
    number: int = 1
    progress: Progress | None = None
    partition: str | None = None

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PendingAttempt:
        """An entry as `SensorCursor.dump` wrote it."""
        progress = value.get("progress")
        return cls(
            pipeline=value["pipeline"],
            batch_ids=list(value["batch_ids"]),
            token_limit_waits=int(value.get("token_limit_waits", 0)),
            number=int(value.get("number", 1)),
            partition=value.get("partition"),
            progress=None
            if progress is None
            else Progress(
                progress["total"],
                progress["completed"],
                progress["failed"],
                tuple(progress["statuses"]),
            ),
        )


@dataclass
class SensorCursor:
    """The event-log storage id read up to, and the attempts in flight by download run key."""

    after: int = 0
    pending: dict[str, PendingAttempt] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> SensorCursor:
        """The cursor a tick stored, or a fresh one."""
        if not raw:
            return cls()
        value = json.loads(raw)
        return cls(
            int(value.get("after", 0)),
            {
                run_key: PendingAttempt.from_json(entry)
                for run_key, entry in value.get("pending", {}).items()
            },
        )

    def dump(self) -> str:
        """The cursor as the JSON string Dagster stores."""
        return json.dumps(
            {
                "after": self.after,
                "pending": {run_key: asdict(entry) for run_key, entry in self.pending.items()},
            }
        )
