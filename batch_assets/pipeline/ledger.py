"""The submission ledger: each attempt and each cancel request, as `<name>_batch` records it.

Attempts are materializations of `<name>_batch` (the first by the submission step, follow-ups by
the download step); cancel requests are observations of it. This module alone writes and reads
their metadata: everything else works with `AttemptRecord` and `CancelRequest`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from batch_assets.core.records import Submission, SubmittedBatch
from batch_assets.pipeline.event_log import (
    records_after,
    records_newest_first,
)
from batch_assets.pipeline.keys import (
    LEDGER_ATTEMPT,
    LEDGER_BATCH_IDS,
    LEDGER_BATCHES,
    LEDGER_CANCEL_REQUESTED,
    LEDGER_CANCEL_REQUESTED_BY_RUN,
    LEDGER_REQUEST_COUNT,
    LEDGER_RETRY_OF,
    LEDGER_REUSED_BATCHES,
    LEDGER_REUSED_UPLOADS,
    LEDGER_TOKEN_LIMIT_WAITS,
    submission_run_key,
)


def _only(partition: str | None) -> list[str] | None:
    """The partitions filter for one partition, or none."""
    return None if partition is None else [partition]


def _values(metadata: Mapping[str, dg.MetadataValue]) -> dict[str, Any]:
    """Metadata as plain values."""
    return {name: value.value for name, value in metadata.items()}


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a submission: the first (number 1) or a follow-up for retried requests."""

    number: int
    batches: tuple[SubmittedBatch, ...]
    retry_of: str | None = None
    token_limit_waits: int = 0
    reused_batches: int = 0
    reused_uploads: int = 0
    partition: str | None = None  # the materialization's partition, not in the metadata

    @property
    def batch_ids(self) -> list[str]:
        """The batch ids, in shard order."""
        return [batch.batch_id for batch in self.batches]

    @property
    def submission_key(self) -> str:
        """The submission this attempt belongs to: the run key of its first attempt."""
        return self.retry_of or submission_run_key(self.batch_ids)

    @property
    def run_key(self) -> str:
        """The one download run the sensor asks for once this attempt's batches end."""
        return submission_run_key(self.batch_ids)

    def to_metadata(self) -> dict[str, dg.MetadataValue]:
        """The attempt as `<name>_batch` metadata."""
        metadata: dict[str, dg.MetadataValue] = {
            LEDGER_BATCH_IDS: dg.MetadataValue.json(self.batch_ids),
            LEDGER_ATTEMPT: dg.MetadataValue.int(self.number),
            LEDGER_REQUEST_COUNT: dg.MetadataValue.int(
                sum(batch.request_count for batch in self.batches)
            ),
            LEDGER_TOKEN_LIMIT_WAITS: dg.MetadataValue.int(self.token_limit_waits),
            LEDGER_REUSED_BATCHES: dg.MetadataValue.int(self.reused_batches),
            LEDGER_REUSED_UPLOADS: dg.MetadataValue.int(self.reused_uploads),
            LEDGER_BATCHES: dg.MetadataValue.json([asdict(batch) for batch in self.batches]),
        }
        if self.retry_of is not None:
            metadata[LEDGER_RETRY_OF] = dg.MetadataValue.text(self.retry_of)
        return metadata

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, dg.MetadataValue], partition: str | None = None
    ) -> AttemptRecord | None:
        """The attempt a `<name>_batch` materialization records, or None if it records none."""
        values = _values(metadata)
        if LEDGER_BATCHES not in values:
            return None
        return cls(
            number=int(values.get(LEDGER_ATTEMPT, 1)),
            batches=tuple(SubmittedBatch(**batch) for batch in values[LEDGER_BATCHES]),
            retry_of=values.get(LEDGER_RETRY_OF),
            token_limit_waits=int(values.get(LEDGER_TOKEN_LIMIT_WAITS, 0)),
            reused_batches=int(values.get(LEDGER_REUSED_BATCHES, 0)),
            reused_uploads=int(values.get(LEDGER_REUSED_UPLOADS, 0)),
            partition=partition,
        )

    @classmethod
    def from_record(cls, record: dg.EventLogRecord) -> AttemptRecord | None:
        """The attempt an event-log record of `<name>_batch` holds, if it is a materialization."""
        materialization = record.asset_materialization
        if materialization is None:
            return None
        return cls.from_metadata(materialization.metadata, materialization.partition)


@dataclass(frozen=True)
class CancelRequest:
    """Batches `<name>_cancel_job` asked the Batch API to cancel, and the run that asked."""

    batch_ids: tuple[str, ...]
    run_id: str

    def to_metadata(self) -> dict[str, dg.MetadataValue]:
        """The request as metadata of an observation of `<name>_batch`."""
        return {
            LEDGER_CANCEL_REQUESTED: dg.MetadataValue.json(sorted(self.batch_ids)),
            LEDGER_CANCEL_REQUESTED_BY_RUN: dg.MetadataValue.text(self.run_id),
        }

    @classmethod
    def from_record(cls, record: dg.EventLogRecord) -> CancelRequest | None:
        """The request an observation of `<name>_batch` holds, or None."""
        observation = record.asset_observation
        if observation is None or LEDGER_CANCEL_REQUESTED not in observation.metadata:
            return None
        values = _values(observation.metadata)
        return cls(
            tuple(values[LEDGER_CANCEL_REQUESTED]),
            str(values.get(LEDGER_CANCEL_REQUESTED_BY_RUN, "")),
        )


@dataclass(frozen=True)
class SubmissionHistory:
    """A submission's attempts, oldest first, and where in the event log its first one is."""

    attempts: tuple[AttemptRecord, ...]
    first_storage_id: int

    @property
    def latest(self) -> AttemptRecord:
        """The attempt the submission is on now."""
        return self.attempts[-1]


@dataclass(frozen=True)
class Ledger:
    """One pipeline's ledger, read from the instance's event log."""

    instance: dg.DagsterInstance
    batch_key: dg.AssetKey

    def attempts_after(self, after: int) -> Iterator[tuple[int, AttemptRecord | None]]:
        """(storage id, attempt) of each materialization stored after `after`, oldest first."""
        for record in records_after(self.instance.fetch_materializations, self.batch_key, after):
            yield record.storage_id, AttemptRecord.from_record(record)

    def latest_attempt(self, partition: str | None = None) -> AttemptRecord | None:
        """The attempt recorded last (of `partition`, if given), whichever submission it
        belongs to."""
        for record in records_newest_first(
            self.instance.fetch_materializations, self.batch_key, _only(partition)
        ):
            attempt = AttemptRecord.from_record(record)
            if attempt is not None:
                return attempt
        return None

    def history(self, first: Submission, partition: str | None = None) -> SubmissionHistory:
        """The submission that created `first`'s batches (in `partition`, if given), with every
        follow-up recorded since."""
        first_attempt = AttemptRecord(1, first.batches, partition=partition)
        if not first.batches:  # answered by the cache: no follow-up, nothing to cancel
            return SubmissionHistory((first_attempt,), self._newest_storage_id(partition))
        root = submission_run_key(first.batch_ids)
        follow_ups: dict[int, AttemptRecord] = {}
        since = 0
        for record in records_newest_first(
            self.instance.fetch_materializations, self.batch_key, _only(partition)
        ):
            attempt = AttemptRecord.from_record(record)
            if attempt is None:
                continue
            if attempt.retry_of is None:
                if attempt.run_key == root:
                    since = record.storage_id
                    # A materialization that reused every batch is a later copy: read on to the
                    # one that created them, and the follow-ups recorded in between.
                    if attempt.reused_batches < len(attempt.batches):
                        break
            elif attempt.retry_of == root:
                follow_ups.setdefault(attempt.number, attempt)
        ordered = [follow_ups[number] for number in sorted(follow_ups)]
        return SubmissionHistory((first_attempt, *ordered), since)

    def _newest_storage_id(self, partition: str | None) -> int:
        """The storage id of the newest materialization (of `partition`), or 0."""
        for record in records_newest_first(
            self.instance.fetch_materializations, self.batch_key, _only(partition)
        ):
            return record.storage_id
        return 0

    def cancel_requested(self, since: int) -> set[str]:
        """Batch ids `<name>_cancel_job` asked to cancel after the storage id `since`."""
        requested: set[str] = set()
        for record in records_after(self.instance.fetch_observations, self.batch_key, since):
            request = CancelRequest.from_record(record)
            if request is not None:
                requested.update(request.batch_ids)
        return requested

    def record_cancel(self, request: CancelRequest) -> None:
        """Record a cancel request as an observation of `<name>_batch`."""
        self.instance.report_runless_asset_event(
            dg.AssetObservation(asset_key=self.batch_key, metadata=request.to_metadata())
        )
