"""The audit trail in PostgreSQL (a mixin of `PostgresStore`): append, search, get.

The `audit` table (migration 2) has no foreign key to `jobs` and triggers refuse UPDATE,
DELETE and TRUNCATE, so retention (`prune`) and erasure (`delete_job`) never reach it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from service.store.audit_query import audit_where
from service.store.records import AuditRecord, utc_ms

AUDIT_COLS = "id, at, client, action, resource_type, resource_id, outcome, source, detail"


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(utc_ms(text))


def audit_record(row: Any) -> AuditRecord:
    record_id, at, client, action, resource_type, resource_id, outcome, source, detail = row
    return AuditRecord(
        record_id, at.astimezone(dt.UTC).isoformat(timespec="milliseconds"), client, action,
        resource_type, resource_id, outcome, source, detail,
    )  # fmt: skip


class PostgresAudit:
    """Audit queries that need only `_fetch`."""

    async def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    async def append_audit(self, record: AuditRecord) -> None:
        await self._fetch(
            f"INSERT INTO audit ({AUDIT_COLS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (
                record.id, _instant(record.at), record.client, record.action,
                record.resource_type, record.resource_id, record.outcome, record.source,
                record.detail,
            ),
        )  # fmt: skip

    async def audit_records(
        self,
        *,
        client: str | None = None,
        since: str | None = None,
        until: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        where, args = audit_where(
            "%s", _instant, client=client, action=action, since=since, until=until
        )
        rows = await self._fetch(
            f"SELECT {AUDIT_COLS} FROM audit WHERE {where} "
            "ORDER BY at DESC, id DESC LIMIT %s OFFSET %s",
            (*args, max(0, limit), max(0, offset)),
        )
        return [audit_record(row) for row in rows]

    async def get_audit(self, record_id: str) -> AuditRecord | None:
        rows = await self._fetch(f"SELECT {AUDIT_COLS} FROM audit WHERE id=%s", (record_id,))
        return audit_record(rows[0]) if rows else None
