"""The audit trail in SQLite (a mixin of `SqliteDb`): append, search, get.

The `audit` table has no foreign key to `jobs` and triggers refuse UPDATE and DELETE, so
retention (`prune`) and erasure (`delete_job`) never reach it.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from service.store.audit_query import audit_where
from service.store.records import AuditRecord, utc_ms

AUDIT_COLS = "id, at, client, action, resource_type, resource_id, outcome, source, detail"


def audit_record(row: tuple[Any, ...]) -> AuditRecord:
    return AuditRecord(*row)


class SqliteAudit:
    """Audit queries that need only the connection and its lock."""

    _db: sqlite3.Connection
    _lock: threading.Lock

    def append_audit(self, record: AuditRecord) -> None:
        with self._lock:  # one INSERT: atomic in autocommit mode
            self._db.execute(
                f"INSERT INTO audit ({AUDIT_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    record.id, utc_ms(record.at), record.client, record.action,
                    record.resource_type, record.resource_id, record.outcome, record.source,
                    record.detail,
                ),
            )  # fmt: skip

    def audit_records(
        self,
        client: str | None = None,
        since: str | None = None,
        until: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        # `at` is stored as utc_ms text, which sorts and compares as time.
        where, args = audit_where(
            "?", utc_ms, client=client, action=action, since=since, until=until
        )
        sql = (
            f"SELECT {AUDIT_COLS} FROM audit WHERE {where} "
            "ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
        )
        with self._lock:
            rows = self._db.execute(sql, (*args, max(0, limit), max(0, offset))).fetchall()
        return [audit_record(row) for row in rows]

    def get_audit(self, record_id: str) -> AuditRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {AUDIT_COLS} FROM audit WHERE id=?", (record_id,)
            ).fetchone()
        return None if row is None else audit_record(row)
