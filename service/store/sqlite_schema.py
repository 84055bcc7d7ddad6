"""The SQLite schema, its upgrade from earlier versions, and the row mapping."""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from service.store.records import Fence, JobRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
    created TEXT NOT NULL, updated TEXT NOT NULL, meta TEXT NOT NULL DEFAULT '{}',
    attempt INTEGER NOT NULL DEFAULT 0, worker TEXT, lease_until TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cases (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    record TEXT NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS artifacts (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, media_type TEXT NOT NULL, content BLOB NOT NULL,
    PRIMARY KEY (job_id, kind)
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created);
-- The audit trail: no foreign key to jobs (it outlives them), append-only (the triggers).
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY, at TEXT NOT NULL, client TEXT NOT NULL, action TEXT NOT NULL,
    resource_type TEXT NOT NULL, resource_id TEXT, outcome TEXT NOT NULL, source TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS audit_client_at ON audit(client, at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- Client assertion ids already used (single use across every process sharing the store).
CREATE TABLE IF NOT EXISTS used_once (key TEXT PRIMARY KEY, until REAL NOT NULL);
-- The DICOM instance index (QIDO-RS / WADO-RS): headers of stored DICOM objects, per job.
CREATE TABLE IF NOT EXISTS dicom_instances (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, kind TEXT NOT NULL,
    client TEXT NOT NULL, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, modality TEXT NOT NULL,
    patient_id TEXT NOT NULL, study_date TEXT NOT NULL, attrs TEXT NOT NULL,
    PRIMARY KEY (job_id, kind)
);
CREATE INDEX IF NOT EXISTS dicom_study ON dicom_instances(study_uid);
CREATE INDEX IF NOT EXISTS dicom_sop ON dicom_instances(sop_uid);
CREATE INDEX IF NOT EXISTS dicom_client_study ON dicom_instances(client, study_uid);
-- One row rewritten by the readiness write probe.
CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
"""


def create_schema(db: sqlite3.Connection) -> None:
    """Create the tables, and add the lease columns to a store written before them."""
    db.executescript(SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for column, ddl in (
        ("attempt", "INTEGER NOT NULL DEFAULT 0"),
        ("worker", "TEXT"),
        ("lease_until", "TEXT"),
        ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"),
    ):
        if column not in columns:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {ddl}")


COLS = "id, kind, status, created, updated, meta, attempt, worker, cancel_requested"
HELD = "id=? AND status='running' AND worker=? AND attempt=?"


def job_record(row: tuple[Any, ...]) -> JobRecord:
    job_id, kind, status, created, updated, meta, attempt, worker, cancel = row
    return JobRecord(
        job_id, kind, status, created, updated, json.loads(meta), attempt, worker, bool(cancel)
    )


def fence_key(fence: Fence) -> tuple[str, str, int]:
    return (fence.job_id, fence.worker, fence.attempt)


class Transaction:
    """`with Transaction(db, lock) as db:` BEGIN IMMEDIATE … COMMIT, ROLLBACK on error — unless
    SQLite already rolled back (so the original error is raised, not "no transaction"), and
    also after a failed COMMIT, which may leave the transaction open."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            if not kind:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:  # SQLITE_FULL / IOERR may have rolled it back already
                self.db.execute("ROLLBACK")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        finally:
            self.lock.release()
