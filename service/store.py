"""Embedded SQLite store for cases, jobs, their events and their artifacts (PDF, JSON, PNG).

A job's case (`Case.record()` + the original bytes) is written with the job, before the job is
acknowledged. Events are appended with a per-job sequence number, which is the SSE `id:` — so
a client that lost its connection re-attaches with `Last-Event-ID` and misses nothing. A
running job's `heartbeat` is refreshed by the process running it; only jobs whose heartbeat
has gone stale are taken as interrupted (`fail_stale`), so several processes can share one
store. Retention (age and count) is enforced by `prune`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    heartbeat TEXT,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS cases (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    record TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS artifacts (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    media_type TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (job_id, kind)
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
"""

TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class StoredEvent:
    """One persisted pipeline event."""

    seq: int
    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class JobRecord:
    """A job's row."""

    id: str
    kind: str
    status: str
    created: str
    updated: str
    meta: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Store:
    """Thread-safe SQLite access (one connection, serialised by a lock; WAL mode)."""

    def __init__(self, path: Path, retention_hours: int = 72, max_jobs: int = 2000) -> None:
        self.path = path
        self.retention = dt.timedelta(hours=retention_hours)
        self.max_jobs = max_jobs
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "heartbeat" not in columns:  # a store written by an earlier version
            self._db.execute("ALTER TABLE jobs ADD COLUMN heartbeat TEXT")

    def create_job(
        self,
        job_id: str,
        kind: str,
        meta: dict[str, Any],
        case: tuple[dict[str, Any], bytes] | None = None,
    ) -> None:
        """Register a new job (status `queued`) and, in the same transaction, its case."""
        now = _now()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO jobs (id, kind, status, created, updated, heartbeat, meta) "
                "VALUES (?,?,?,?,?,?,?)",
                (job_id, kind, "queued", now, now, now, json.dumps(meta)),
            )
            if case is not None:
                record, data = case
                self._db.execute(
                    "INSERT INTO cases (job_id, record, data) VALUES (?,?,?)",
                    (job_id, json.dumps(record, ensure_ascii=False), data),
                )

    def get_case(self, job_id: str) -> tuple[dict[str, Any], bytes] | None:
        """(`Case.record()`, original bytes) of a job, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT record, data FROM cases WHERE job_id=?", (job_id,)
            ).fetchone()
        return None if row is None else (json.loads(row[0]), bytes(row[1]))

    def heartbeat(self, job_ids: list[str]) -> None:
        """Mark these jobs as still alive (called periodically by the process running them)."""
        if not job_ids:
            return
        now = _now()
        with self._lock:
            self._db.executemany(
                "UPDATE jobs SET heartbeat=? WHERE id=?", [(now, job_id) for job_id in job_ids]
            )

    def stale_jobs(self, older_than: dt.timedelta) -> list[str]:
        """Unfinished jobs whose heartbeat is older than `older_than` (their process is gone)."""
        cutoff = (dt.datetime.now(dt.UTC) - older_than).isoformat(timespec="milliseconds")
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE status IN ('queued','running') "
                "AND COALESCE(heartbeat, updated) < ?",
                (cutoff,),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def is_alive(self, job_id: str, within: dt.timedelta) -> bool:
        """True while the job is unfinished and its heartbeat is fresher than `within`."""
        cutoff = (dt.datetime.now(dt.UTC) - within).isoformat(timespec="milliseconds")
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM jobs WHERE id=? AND status IN ('queued','running') "
                "AND COALESCE(heartbeat, updated) >= ?",
                (job_id, cutoff),
            ).fetchone()
        return row is not None

    def set_status(self, job_id: str, status: str) -> None:
        """Update a job's status."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status=?, updated=? WHERE id=?", (status, _now(), job_id)
            )

    def update_meta(self, job_id: str, **values: Any) -> None:
        """Merge values into a job's meta document."""
        with self._lock:
            row = self._db.execute("SELECT meta FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return
            meta = json.loads(row[0])
            meta.update(values)
            self._db.execute("UPDATE jobs SET meta=? WHERE id=?", (json.dumps(meta), job_id))

    def get_job(self, job_id: str) -> JobRecord | None:
        """A job by id, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, kind, status, created, updated, meta FROM jobs WHERE id=?", (job_id,)
            ).fetchone()
        if row is None:
            return None
        job_id_, kind, status, created, updated, meta = row
        return JobRecord(job_id_, kind, status, created, updated, json.loads(meta))

    def find_job(self, kind: str, key: str, value: str) -> JobRecord | None:
        """The newest job of `kind` whose meta[key] equals value (e.g. a SOP Instance UID)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM jobs WHERE kind=? AND json_extract(meta, ?)=? "
                "ORDER BY created DESC LIMIT 1",
                (kind, f"$.{key}", value),
            ).fetchone()
        return None if row is None else self.get_job(str(row[0]))

    def append_event(self, job_id: str, name: str, data: dict[str, Any]) -> int:
        """Persist an event; returns its sequence number (1, 2, …)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id=?", (job_id,)
            ).fetchone()
            seq = int(row[0])
            self._db.execute(
                "INSERT INTO events (job_id, seq, name, data) VALUES (?,?,?,?)",
                (job_id, seq, name, json.dumps(data, ensure_ascii=False)),
            )
        return seq

    def events_after(self, job_id: str, after: int = 0) -> list[StoredEvent]:
        """Events with seq > after, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, name, data FROM events WHERE job_id=? AND seq>? ORDER BY seq",
                (job_id, after),
            ).fetchall()
        return [StoredEvent(seq, name, json.loads(data)) for seq, name, data in rows]

    def put_artifact(self, job_id: str, kind: str, media_type: str, content: bytes) -> None:
        """Store (or replace) an artifact of a job."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO artifacts (job_id, kind, media_type, content) "
                "VALUES (?,?,?,?)",
                (job_id, kind, media_type, content),
            )

    def get_artifact(self, job_id: str, kind: str) -> tuple[str, bytes] | None:
        """(media_type, content) of an artifact, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT media_type, content FROM artifacts WHERE job_id=? AND kind=?",
                (job_id, kind),
            ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    def prune(self) -> int:
        """Delete finished jobs older than the retention period or beyond the count limit."""
        cutoff = (dt.datetime.now(dt.UTC) - self.retention).isoformat(timespec="milliseconds")
        with self._lock:
            before = self._db.total_changes
            self._db.execute(
                "DELETE FROM jobs WHERE created < ? "
                "AND status IN ('completed','failed','cancelled')",
                (cutoff,),
            )
            self._db.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs "
                "WHERE status IN ('completed','failed','cancelled') "
                "ORDER BY created DESC LIMIT -1 OFFSET ?)",
                (self.max_jobs,),
            )
            return self._db.total_changes - before

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
