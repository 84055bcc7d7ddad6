"""The DICOM instance index on PostgreSQL (a mixin of `PostgresStore`); see `dicom_records`."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.store.dicom_records import (
    CASE_KIND,
    COLUMNS,
    OBJECT_KIND,
    SEARCH_KEYS,
    STORED_EVENT,
    DicomEntry,
    PendingObject,
)
from service.store.sealing import Sealer

_PENDING = f"""
SELECT a.job_id, a.kind, COALESCE(j.meta->>'client', '')
FROM artifacts a JOIN jobs j ON j.id = a.job_id
WHERE a.media_type = 'application/dicom' AND NOT EXISTS
    (SELECT 1 FROM dicom_instances d WHERE d.job_id = a.job_id AND d.kind = a.kind)
UNION ALL
SELECT c.job_id, '{CASE_KIND}', COALESCE(j.meta->>'client', '')
FROM cases c JOIN jobs j ON j.id = c.job_id
WHERE c.record->'source'->>'media_type' = 'application/dicom' AND NOT EXISTS
    (SELECT 1 FROM dicom_instances d WHERE d.job_id = c.job_id AND d.kind = '{CASE_KIND}')
LIMIT %s
"""


class PostgresDicomIndex:
    """`store_dicom_object`, `dicom_pending`, `index_dicom`, `search_dicom`."""

    sealer: Sealer

    async def _open(self) -> AsyncConnectionPool:
        raise NotImplementedError

    async def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    async def store_dicom_object(
        self, job_id: str, meta: dict[str, Any], record: dict[str, Any], data: bytes
    ) -> None:
        pool = await self._open()
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO jobs (id, kind, status, meta) VALUES (%s, %s, 'completed', %s)",
                (job_id, OBJECT_KIND, Jsonb(meta)),
            )
            await conn.execute(
                "INSERT INTO cases (job_id, record, data) VALUES (%s, %s, %s)",
                (job_id, Jsonb(record), self.sealer.seal(data, job_id, "case")),
            )
            await conn.execute(
                "INSERT INTO events (job_id, seq, name, data) VALUES (%s, 1, 'completed', %s)",
                (job_id, Jsonb(STORED_EVENT)),
            )

    async def dicom_pending(self, limit: int = 100) -> list[PendingObject]:
        rows = await self._fetch(_PENDING, (limit,))
        return [PendingObject(str(j), str(k), str(c)) for j, k, c in rows]

    async def index_dicom(self, entries: list[DicomEntry]) -> None:
        marks = ", ".join(["%s"] * len(COLUMNS))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[2:])
        sql = (
            f"INSERT INTO dicom_instances ({', '.join(COLUMNS)}) SELECT {marks} "
            "WHERE EXISTS (SELECT 1 FROM jobs WHERE id = %s) "
            f"ON CONFLICT (job_id, kind) DO UPDATE SET {updates}"
        )
        rows = [(*e.row()[:-1], Jsonb(e.attrs), e.job_id) for e in entries]
        pool = await self._open()
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(sql, rows)

    async def search_dicom(self, client: str | None, filters: dict[str, str]) -> list[DicomEntry]:
        where, args = ["sop_uid <> ''"], []
        if client is not None:
            where.append("client = %s")
            args.append(client)
        for key in SEARCH_KEYS:
            if key in filters:
                where.append(f"{key} = %s")
                args.append(filters[key])
        rows = await self._fetch(
            f"SELECT {', '.join(COLUMNS)} FROM dicom_instances WHERE {' AND '.join(where)} "
            "ORDER BY study_uid, series_uid, sop_uid",
            tuple(args),
        )
        entries = []
        for row in rows:
            values: dict[str, Any] = dict(zip(COLUMNS, row, strict=True))
            values["attrs"] = dict(values["attrs"])
            entries.append(DicomEntry(**values))
        return entries
