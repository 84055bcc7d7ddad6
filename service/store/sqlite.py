"""The embedded SQLite job store, synchronous core (`SqliteStore` wraps it off the event loop).

One connection per process, serialised by a lock, WAL mode and a busy timeout so several
processes can share the file. The lease and fence semantics are `service.store.base`'s.
Erasure is thorough: `secure_delete` zeroes freed content and a `TRUNCATE` checkpoint after
`delete_job` / `prune` empties the WAL, so an erased photo leaves no bytes in the -wal file.
Photos and artifacts are sealed with the `Sealer`'s key when one is configured.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from service.errors import StoredDataUnreadable
from service.store.private_files import private_db_file
from service.store.records import (
    CANCELLED,
    EXHAUSTED,
    TERMINAL,
    Claim,
    Fence,
    JobRecord,
    LeaseState,
    iso_in,
    now_iso,
)
from service.store.sealing import Sealer
from service.store.sqlite_audit import SqliteAudit
from service.store.sqlite_dicom import SqliteDicomIndex
from service.store.sqlite_reads import SqliteReads
from service.store.sqlite_schema import (
    COLS,
    HELD,
    Transaction,
    create_schema,
    fence_key,
    job_record,
)
from service.store.sqlite_upkeep import SqliteUpkeep


class SqliteDb(SqliteReads, SqliteAudit, SqliteUpkeep, SqliteDicomIndex):
    """Synchronous SQLite access; every method is one short transaction."""

    def __init__(
        self,
        path: Path,
        retention_hours: int = 72,
        max_jobs: int = 2000,
        sealer: Sealer | None = None,
    ) -> None:
        self.path = path
        self.retention = dt.timedelta(hours=retention_hours)
        self.max_jobs = max_jobs
        self.sealer = sealer or Sealer()
        if str(path) != ":memory:":
            private_db_file(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA secure_delete=ON")
        with self._lock:
            create_schema(self._db)
            newest = self._db.execute(
                "SELECT job_id, data FROM cases ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
        if newest is not None:
            try:
                self.sealer.check(bytes(newest[1]), str(newest[0]), "case")
            except BaseException:
                self._db.close()
                raise

    def _tx(self) -> Any:
        """BEGIN IMMEDIATE … COMMIT (rolled back on error), under the process lock."""
        return Transaction(self._db, self._lock)

    def create_job(
        self, job_id: str, kind: str, meta: dict[str, Any], case: tuple[dict[str, Any], bytes]
    ) -> None:
        now = now_iso()
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, status, created, updated, meta) "
                "VALUES (?,?,'queued',?,?,?)",
                (job_id, kind, now, now, json.dumps(meta)),
            )
            record, data = case
            db.execute(
                "INSERT INTO cases (job_id, record, data) VALUES (?,?,?)",
                (
                    job_id,
                    json.dumps(record, ensure_ascii=False),
                    self.sealer.seal(data, job_id, "case"),
                ),
            )

    def claim(self, worker: str, lease_s: float, max_attempts: int) -> Claim | None:
        with self._tx() as db:
            while True:
                now = now_iso()
                row = db.execute(
                    f"SELECT {COLS}, status='running' FROM jobs WHERE status='queued' "
                    "OR (status='running' AND lease_until < ?) ORDER BY created LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                job, expired = job_record(row[:-1]), bool(row[-1])
                if job.attempt >= max_attempts:
                    self._end(db, job.id, "failed", "error", dict(EXHAUSTED))
                    continue
                if job.cancel_requested:
                    self._end(db, job.id, "cancelled", "error", dict(CANCELLED))
                    continue
                db.execute(
                    "UPDATE jobs SET status='running', worker=?, attempt=attempt+1, "
                    "lease_until=?, updated=? WHERE id=?",
                    (worker, iso_in(lease_s), now, job.id),
                )
                record, sealed = db.execute(
                    "SELECT record, data FROM cases WHERE job_id=?", (job.id,)
                ).fetchone()
                try:
                    data = self.sealer.open(bytes(sealed), job.id, "case")
                except StoredDataUnreadable as exc:
                    self._end(db, job.id, "failed", "error", exc.problem())
                    continue
                claimed = JobRecord(
                    job.id, job.kind, "running", job.created, now, job.meta, job.attempt + 1, worker
                )
                return Claim(claimed, json.loads(record), data, expired)

    def _end(
        self, db: sqlite3.Connection, job_id: str, status: str, name: str, data: dict[str, Any]
    ) -> None:
        """Final status and terminal event, inside the caller's transaction."""
        db.execute(
            "UPDATE jobs SET status=?, worker=NULL, lease_until=NULL, updated=? WHERE id=?",
            (status, now_iso(), job_id),
        )
        self._insert_event(db, job_id, name, data)

    @staticmethod
    def _insert_event(db: sqlite3.Connection, job_id: str, name: str, data: dict[str, Any]) -> int:
        seq = int(
            db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id=?", (job_id,)
            ).fetchone()[0]
        )
        db.execute(
            "INSERT INTO events (job_id, seq, name, data) VALUES (?,?,?,?)",
            (job_id, seq, name, json.dumps(data, ensure_ascii=False)),
        )
        return seq

    def renew(self, fence: Fence, lease_s: float) -> LeaseState:
        with self._tx() as db:
            row = db.execute(f"SELECT cancel_requested FROM jobs WHERE {HELD}", fence_key(fence))
            row = row.fetchone()
            if row is None:
                return "lost"
            db.execute(
                f"UPDATE jobs SET lease_until=? WHERE {HELD}",
                (iso_in(lease_s), *fence_key(fence)),
            )
            return "cancel" if row[0] else "held"

    def release(self, fence: Fence) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, "
                f"attempt=attempt-1, updated=? WHERE {HELD}",
                (now_iso(), *fence_key(fence)),
            )

    def finish(self, fence: Fence, status: str) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE jobs SET status=?, worker=NULL, lease_until=NULL, updated=? WHERE {HELD}",
                (status, now_iso(), *fence_key(fence)),
            )
            return bool(cursor.rowcount == 1)

    def end(self, fence: Fence, status: str, name: str, data: dict[str, Any]) -> int | None:
        with self._tx() as db:
            if not self._holds(db, fence):
                return None
            seq = self._insert_event(db, fence.job_id, name, data)
            db.execute(
                "UPDATE jobs SET status=?, worker=NULL, lease_until=NULL, updated=? WHERE id=?",
                (status, now_iso(), fence.job_id),
            )
            return seq

    def expire_leases_of(self, workers: list[str]) -> int:
        with self._tx() as db:
            return sum(
                db.execute(
                    "UPDATE jobs SET lease_until=? WHERE status='running' AND worker=?",
                    ("", worker),
                ).rowcount
                for worker in workers
            )

    def request_cancel(self, job_id: str) -> JobRecord | None:
        with self._tx() as db:
            row = db.execute(f"SELECT {COLS} FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return None
            job = job_record(row)
            if job.status == "queued":
                self._end(db, job_id, "cancelled", "error", dict(CANCELLED))
            elif job.status == "running":
                db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
        return self.get_job(job_id)

    def append_event(
        self, job_id: str, name: str, data: dict[str, Any], fence: Fence | None = None
    ) -> int | None:
        with self._tx() as db:
            if fence is not None and not self._holds(db, fence):
                return None
            return self._insert_event(db, job_id, name, data)

    @staticmethod
    def _holds(db: sqlite3.Connection, fence: Fence) -> bool:
        return (
            db.execute(f"SELECT 1 FROM jobs WHERE {HELD}", fence_key(fence)).fetchone() is not None
        )

    def put_artifact(
        self, job_id: str, kind: str, media_type: str, content: bytes, fence: Fence | None = None
    ) -> bool:
        with self._tx() as db:
            if fence is not None and not self._holds(db, fence):
                return False
            db.execute(
                "INSERT OR REPLACE INTO artifacts (job_id, kind, media_type, content) "
                "VALUES (?,?,?,?)",
                (job_id, kind, media_type, self.sealer.seal(content, job_id, kind)),
            )
            return True

    def delete_job(self, job_id: str) -> bool:
        with self._tx() as db:
            deleted = bool(db.execute("DELETE FROM jobs WHERE id=?", (job_id,)).rowcount == 1)
        if deleted:
            self.checkpoint()
        return deleted

    def prune(self) -> int:
        cutoff = (dt.datetime.now(dt.UTC) - self.retention).isoformat(timespec="milliseconds")
        finished = "('" + "','".join(sorted(TERMINAL)) + "')"
        with self._tx() as db:
            old = db.execute(
                f"DELETE FROM jobs WHERE created < ? AND status IN {finished}", (cutoff,)
            ).rowcount
            beyond = db.execute(
                f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status IN {finished} "
                "ORDER BY created DESC LIMIT -1 OFFSET ?)",
                (self.max_jobs,),
            ).rowcount
        if old + beyond:
            self.checkpoint()
        return int(old + beyond)

    def use_once(self, key: str, until: float) -> bool:
        import time

        with self._tx() as db:
            db.execute("DELETE FROM used_once WHERE until < ?", (time.time(),))
            inserted = db.execute(
                "INSERT OR IGNORE INTO used_once (key, until) VALUES (?, ?)", (key, until)
            )
            return bool(inserted.rowcount == 1)

    def close(self) -> None:
        with self._lock:
            self._db.close()
