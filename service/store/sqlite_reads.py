"""Read-only queries of the SQLite store (a mixin of `SqliteDb`)."""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from service.store.records import JobRecord, StoredEvent
from service.store.sealing import Sealer
from service.store.sqlite_schema import COLS, job_record


class SqliteReads:
    """Queries that need only the connection and its lock."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    sealer: Sealer

    def count_active(self, client: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued','running')"
        args: tuple[str, ...] = ()
        if client is not None:
            sql, args = sql + " AND json_extract(meta, '$.client') = ?", (client,)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def job_states(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {str(status): int(n) for status, n in rows}

    def running_workers(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT worker FROM jobs WHERE status='running' AND worker IS NOT NULL"
            ).fetchall()
        return [str(row[0]) for row in rows]

    def cancel_requested(self, worker: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE status='running' AND worker=? AND cancel_requested=1",
                (worker,),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def events_after(self, job_id: str, after: int = 0) -> list[StoredEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, name, data FROM events WHERE job_id=? AND seq>? ORDER BY seq",
                (job_id, after),
            ).fetchall()
        return [StoredEvent(seq, name, json.loads(data)) for seq, name, data in rows]

    def get_artifact(self, job_id: str, kind: str) -> tuple[str, bytes] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT media_type, content FROM artifacts WHERE job_id=? AND kind=?",
                (job_id, kind),
            ).fetchone()
        if row is None:
            return None
        return str(row[0]), self.sealer.open(bytes(row[1]), job_id, kind)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {COLS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else job_record(row)

    def find_job(self, kind: str, key: str, value: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLS} FROM jobs WHERE kind=? AND json_extract(meta, ?)=? "
                "ORDER BY created DESC LIMIT 1",
                (kind, f"$.{key}", value),
            ).fetchone()
        return None if row is None else job_record(row)

    def get_case(self, job_id: str) -> tuple[dict[str, Any], bytes] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT record, data FROM cases WHERE job_id=?", (job_id,)
            ).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), self.sealer.open(bytes(row[1]), job_id, "case")

    def indexed_jobs(
        self, artifact: str, client: str | None = None
    ) -> list[tuple[JobRecord, bytes]]:
        cols = ", ".join(f"j.{c.strip()}" for c in COLS.split(","))
        sql = (
            f"SELECT {cols}, a.content FROM jobs j JOIN artifacts a "
            "ON a.job_id = j.id AND a.kind = ? WHERE j.status = 'completed'"
        )
        args: tuple[str, ...] = (artifact,)
        if client is not None:
            sql += " AND COALESCE(json_extract(j.meta, '$.client'), 'anonymous') = ?"
            args += (client,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY j.created DESC, j.id DESC", args).fetchall()
        records = [job_record(row[:-1]) for row in rows]
        return [
            (job, self.sealer.open(bytes(row[-1]), job.id, artifact))
            for job, row in zip(records, rows, strict=True)
        ]
