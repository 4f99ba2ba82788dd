"""On-disk state of the local Batch API: file objects and bytes, batches and their progress."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    purpose TEXT NOT NULL,
    expires_at INTEGER,
    object TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    object TEXT NOT NULL,
    progress TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status);
"""

ACTIVE_STATUSES = ("validating", "in_progress", "finalizing", "cancelling")
# A file id as this server makes them (`ids.file_id`); nothing else may name a path under files/.
_FILE_ID = re.compile(r"file-[A-Za-z0-9]{1,64}")


class Store:
    """SQLite for objects, one plain file per uploaded or generated file; safe across threads."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.files_dir = state_dir / "files"
        self.work_dir = state_dir / "work"
        self.upload_dir = state_dir / "uploads"
        for folder in (self.files_dir, self.work_dir, self.upload_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._remove_unfinished_uploads()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            state_dir / "state.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _remove_unfinished_uploads(self) -> None:
        """Delete the files that uploads cut short left in uploads/; folders are not ours."""
        for leftover in self.upload_dir.iterdir():
            if leftover.is_symlink() or not leftover.is_dir():
                leftover.unlink()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # Files

    @staticmethod
    def is_file_id(file_id: str) -> bool:
        """Whether `file_id` is shaped like the ids this server gives files."""
        return _FILE_ID.fullmatch(file_id) is not None

    def file_path(self, file_id: str) -> Path:
        """Where the bytes of a file live; a ValueError for anything not shaped like a file id."""
        if not self.is_file_id(file_id):
            raise ValueError(f"not a file id: {file_id[:64]!r}")
        return self.files_dir / file_id

    def add_file(self, obj: dict[str, Any], source: Path) -> None:
        """Move `source` into place as the content of `obj`, then record `obj`."""
        os.replace(source, self.file_path(obj["id"]))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (id, purpose, expires_at, object) VALUES (?, ?, ?, ?)",
                (obj["id"], obj["purpose"], obj["expires_at"], json.dumps(obj)),
            )

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        """The file object, or None."""
        rows = self._query("SELECT object FROM files WHERE id = ?", (file_id,))
        return json.loads(rows[0][0]) if rows else None

    def delete_file(self, file_id: str) -> bool:
        """Forget a file and remove its bytes; False if there was none."""
        if not self.is_file_id(file_id):
            return False
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount
        if deleted:
            self.file_path(file_id).unlink(missing_ok=True)
        return deleted > 0

    def list_files(
        self, *, purpose: str | None, limit: int, ascending: bool, after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of files and whether more follow."""
        clauses, args = [], []
        if purpose is not None:
            clauses.append("purpose = ?")
            args.append(purpose)
        if after is not None:
            clauses.append(f"seq {'>' if ascending else '<'} (SELECT seq FROM files WHERE id = ?)")
            args.append(after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "ASC" if ascending else "DESC"
        rows = self._query(
            f"SELECT object FROM files {where} ORDER BY seq {order} LIMIT ?", (*args, limit + 1)
        )
        return [json.loads(row[0]) for row in rows[:limit]], len(rows) > limit

    def expired_file_ids(self, now: float) -> list[str]:
        """Files whose `expires_at` has passed."""
        rows = self._query(
            "SELECT id FROM files WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )
        return [row[0] for row in rows]

    # Batches

    def add_batch(self, obj: dict[str, Any], progress: dict[str, Any]) -> None:
        """Record a new batch."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO batches (id, status, object, progress) VALUES (?, ?, ?, ?)",
                (obj["id"], obj["status"], json.dumps(obj), json.dumps(progress)),
            )

    def save_batch(self, obj: dict[str, Any], progress: dict[str, Any]) -> None:
        """Replace a batch's object and progress in one transaction."""
        with self._transaction() as db:
            db.execute(
                "UPDATE batches SET status = ?, object = ?, progress = ? WHERE id = ?",
                (obj["status"], json.dumps(obj), json.dumps(progress), obj["id"]),
            )

    def get_batch(self, batch_id: str) -> dict[str, Any] | None:
        """The batch object, or None."""
        rows = self._query("SELECT object FROM batches WHERE id = ?", (batch_id,))
        return json.loads(rows[0][0]) if rows else None

    def get_batch_with_progress(
        self, batch_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The batch object and its progress, or None."""
        rows = self._query("SELECT object, progress FROM batches WHERE id = ?", (batch_id,))
        return (json.loads(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def list_batches(self, *, limit: int, after: str | None) -> tuple[list[dict[str, Any]], bool]:
        """One page of batches, newest first, and whether more follow."""
        if after is None:
            rows = self._query("SELECT object FROM batches ORDER BY seq DESC LIMIT ?", (limit + 1,))
        else:
            rows = self._query(
                "SELECT object FROM batches WHERE seq < (SELECT seq FROM batches WHERE id = ?) "
                "ORDER BY seq DESC LIMIT ?",
                (after, limit + 1),
            )
        return [json.loads(row[0]) for row in rows[:limit]], len(rows) > limit

    def active_batch_ids(self) -> list[str]:
        """Ids of batches that have not reached a terminal status, oldest first."""
        marks = ", ".join("?" for _ in ACTIVE_STATUSES)
        rows = self._query(
            f"SELECT id FROM batches WHERE status IN ({marks}) ORDER BY seq", ACTIVE_STATUSES
        )
        return [row[0] for row in rows]

    def in_flight_progress(self, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
        """Progress records of batches in the given statuses."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._query(f"SELECT progress FROM batches WHERE status IN ({marks})", statuses)
        return [json.loads(row[0]) for row in rows]
