"""The DICOM instance index on SQLite (a mixin of `SqliteDb`); see `dicom_records`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from service.store.dicom_records import (
    CASE_KIND,
    COLUMNS,
    OBJECT_KIND,
    SEARCH_KEYS,
    STORED_EVENT,
    DicomEntry,
    PendingObject,
)
from service.store.records import now_iso
from service.store.sealing import Sealer

if TYPE_CHECKING:
    from service.store.sqlite import SqliteDb

_PENDING = f"""
SELECT a.job_id, a.kind, COALESCE(json_extract(j.meta, '$.client'), '')
FROM artifacts a JOIN jobs j ON j.id = a.job_id
WHERE a.media_type = 'application/dicom' AND NOT EXISTS
    (SELECT 1 FROM dicom_instances d WHERE d.job_id = a.job_id AND d.kind = a.kind)
UNION ALL
SELECT c.job_id, '{CASE_KIND}', COALESCE(json_extract(j.meta, '$.client'), '')
FROM cases c JOIN jobs j ON j.id = c.job_id
WHERE json_extract(c.record, '$.source.media_type') = 'application/dicom' AND NOT EXISTS
    (SELECT 1 FROM dicom_instances d WHERE d.job_id = c.job_id AND d.kind = '{CASE_KIND}')
LIMIT ?
"""


class SqliteDicomIndex:
    """`dicom_pending`, `index_dicom`, `search_dicom`."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    sealer: Sealer

    def store_dicom_object(
        self, job_id: str, meta: dict[str, Any], record: dict[str, Any], data: bytes
    ) -> None:
        now = now_iso()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, kind, status, created, updated, meta) "
                    "VALUES (?,?,'completed',?,?,?)",
                    (job_id, OBJECT_KIND, now, now, json.dumps(meta)),
                )
                self._db.execute(
                    "INSERT INTO cases (job_id, record, data) VALUES (?,?,?)",
                    (
                        job_id,
                        json.dumps(record, ensure_ascii=False),
                        self.sealer.seal(data, job_id, "case"),
                    ),
                )
                self._db.execute(
                    "INSERT INTO events (job_id, seq, name, data) VALUES (?,1,'completed',?)",
                    (job_id, json.dumps(STORED_EVENT)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def dicom_pending(self, limit: int = 100) -> list[PendingObject]:
        with self._lock:
            rows = self._db.execute(_PENDING, (limit,)).fetchall()
        return [PendingObject(str(j), str(k), str(c)) for j, k, c in rows]

    def index_dicom(self, entries: list[DicomEntry]) -> None:
        marks = ",".join("?" * len(COLUMNS))
        rows = [(*e.row()[:-1], json.dumps(e.attrs, separators=(",", ":"))) for e in entries]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Only rows of jobs that still exist (a job erased meanwhile stays erased).
                self._db.executemany(
                    f"INSERT OR REPLACE INTO dicom_instances ({', '.join(COLUMNS)}) "
                    f"SELECT {marks} WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)",
                    [(*row, row[0]) for row in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def search_dicom(self, client: str | None, filters: dict[str, str]) -> list[DicomEntry]:
        where, args = ["sop_uid <> ''"], []
        if client is not None:
            where.append("client = ?")
            args.append(client)
        for key in SEARCH_KEYS:
            if key in filters:
                where.append(f"{key} = ?")
                args.append(filters[key])
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM dicom_instances WHERE {' AND '.join(where)} "
            "ORDER BY study_uid, series_uid, sop_uid"
        )
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_entry(row) for row in rows]


def _entry(row: tuple[Any, ...]) -> DicomEntry:
    values = dict(zip(COLUMNS, row, strict=True))
    values["attrs"] = json.loads(values["attrs"])
    return DicomEntry(**values)


class SqliteDicomIndexAsync:
    """The async face of `SqliteDicomIndex` (a mixin of `SqliteStore`)."""

    db: SqliteDb

    async def store_dicom_object(
        self, job_id: str, meta: dict[str, Any], record: dict[str, Any], data: bytes
    ) -> None:
        await asyncio.to_thread(self.db.store_dicom_object, job_id, meta, record, data)

    async def dicom_pending(self, limit: int = 100) -> list[PendingObject]:
        return await asyncio.to_thread(self.db.dicom_pending, limit)

    async def index_dicom(self, entries: list[DicomEntry]) -> None:
        await asyncio.to_thread(self.db.index_dicom, entries)

    async def search_dicom(self, client: str | None, filters: dict[str, str]) -> list[DicomEntry]:
        return await asyncio.to_thread(self.db.search_dicom, client, filters)
