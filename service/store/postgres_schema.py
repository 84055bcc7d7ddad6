"""PostgreSQL schema: versioned migrations applied at start-up under an advisory lock, and the
LISTEN connection that turns NOTIFYs into in-process wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from service.logging import get_logger
from service.store.records import Fence, JobRecord
from service.store.wakeups import Wakeups

log = get_logger(__name__)
EVENTS_CHANNEL = "skinscreen_events"
WORK_CHANNEL = "skinscreen_work"
_LOCK_KEY = 0x5C1A5C1E  # pg_advisory_lock key for migrations

#: (version, statements). Append new versions; never edit an applied one.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
            created TIMESTAMPTZ NOT NULL DEFAULT now(), updated TIMESTAMPTZ NOT NULL DEFAULT now(),
            meta JSONB NOT NULL DEFAULT '{}', attempt INTEGER NOT NULL DEFAULT 0, worker TEXT,
            lease_until TIMESTAMPTZ, cancel_requested BOOLEAN NOT NULL DEFAULT false
        );
        CREATE INDEX jobs_status_created ON jobs (status, created);
        CREATE INDEX jobs_created ON jobs (created);
        CREATE TABLE cases (
            job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
            record JSONB NOT NULL, data BYTEA NOT NULL
        );
        CREATE TABLE events (
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL, name TEXT NOT NULL, data JSONB NOT NULL,
            PRIMARY KEY (job_id, seq)
        );
        CREATE TABLE artifacts (
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            kind TEXT NOT NULL, media_type TEXT NOT NULL, content BYTEA NOT NULL,
            PRIMARY KEY (job_id, kind)
        );
        """,
    ),
    (
        2,
        # The audit trail: no foreign key to jobs (it outlives them); append-only, enforced by
        # triggers that refuse UPDATE, DELETE and TRUNCATE.
        """
        CREATE TABLE audit (
            id TEXT PRIMARY KEY, at TIMESTAMPTZ NOT NULL, client TEXT NOT NULL,
            action TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT,
            outcome TEXT NOT NULL, source TEXT, detail TEXT
        );
        CREATE INDEX audit_at ON audit (at);
        CREATE INDEX audit_client_at ON audit (client, at);
        CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit trail is append-only';
        END
        $$;
        CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
            FOR EACH ROW EXECUTE FUNCTION audit_append_only();
        CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
            FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
        """,
    ),
    (
        3,
        # Client assertion ids already used: single use across every replica.
        "CREATE TABLE used_once (key TEXT PRIMARY KEY, until DOUBLE PRECISION NOT NULL);",
    ),
    (
        4,
        # One row rewritten by the readiness write probe.
        "CREATE TABLE write_probe (id INTEGER PRIMARY KEY, at TIMESTAMPTZ NOT NULL);",
    ),
    (
        5,
        # The DICOM instance index (QIDO-RS / WADO-RS): headers of stored DICOM objects.
        """
        CREATE TABLE dicom_instances (
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, kind TEXT NOT NULL,
            client TEXT NOT NULL, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
            sop_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, modality TEXT NOT NULL,
            patient_id TEXT NOT NULL, study_date TEXT NOT NULL, attrs JSONB NOT NULL,
            PRIMARY KEY (job_id, kind)
        );
        CREATE INDEX dicom_study ON dicom_instances (study_uid);
        CREATE INDEX dicom_sop ON dicom_instances (sop_uid);
        CREATE INDEX dicom_client_study ON dicom_instances (client, study_uid);
        """,
    ),
)


async def migrate(conn: psycopg.AsyncConnection[object]) -> int:
    """Apply the pending migrations (one process at a time); returns the schema version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        row = await cursor.fetchone()
        current = int(row[0]) if row else 0  # type: ignore[index]
        for version, statements in MIGRATIONS:
            if version > current:
                await conn.execute(statements)  # type: ignore[arg-type]
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                )
                log.info("store.migrated", version=version)
                current = version
    return current


class Listener:
    """One autocommit connection LISTENing to both channels; reconnects after a failure."""

    def __init__(self, url: str, events: Wakeups, work: Wakeups) -> None:
        self.url, self.events, self.work = url, events, work
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="store-listener")

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {WORK_CHANNEL}")
                    async for notice in conn.notifies():
                        if notice.channel == EVENTS_CHANNEL:
                            self.events.wake(notice.payload)
                        else:
                            self.work.wake("work")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # followers fall back to polling meanwhile
                log.warning("store.listener_lost", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


COLS = "id, kind, status, created, updated, meta, attempt, worker, cancel_requested"
HELD = "id=%s AND status='running' AND worker=%s AND attempt=%s"
Conn = psycopg.AsyncConnection[TupleRow]


def job_record(row: Any) -> JobRecord:
    job_id, kind, status, created, updated, meta, attempt, worker, cancel = row
    stamp = "milliseconds"
    return JobRecord(
        job_id, kind, status, created.isoformat(timespec=stamp),
        updated.isoformat(timespec=stamp), dict(meta), attempt, worker, bool(cancel),
    )  # fmt: skip


def fence_key(fence: Fence) -> tuple[str, str, int]:
    return (fence.job_id, fence.worker, fence.attempt)
