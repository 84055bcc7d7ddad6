"""Queries of the PostgreSQL store that need only `_fetch` (a mixin of `PostgresStore`): the
reads, and the readiness probes."""

from __future__ import annotations

from typing import Any

from service.store.faults import WriteProbe
from service.store.postgres_schema import COLS, job_record
from service.store.records import JobRecord, StoredEvent
from service.store.sealing import Sealer


class PostgresReads:
    """Queries that need only `_fetch` (and the sealer, for photos and artifacts)."""

    sealer: Sealer
    probe: WriteProbe

    async def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    async def count_active(self, client: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued','running')"
        if client is None:
            rows = await self._fetch(sql)
        else:
            rows = await self._fetch(sql + " AND meta->>'client' = %s", (client,))
        return int(rows[0][0])

    async def job_states(self) -> dict[str, int]:
        rows = await self._fetch("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        return {str(status): int(n) for status, n in rows}

    async def running_workers(self) -> list[str]:
        rows = await self._fetch("SELECT DISTINCT worker FROM jobs WHERE status='running'")
        return [str(row[0]) for row in rows if row[0]]

    async def cancel_requested(self, worker: str) -> list[str]:
        rows = await self._fetch(
            "SELECT id FROM jobs WHERE status='running' AND worker=%s AND cancel_requested",
            (worker,),
        )
        return [str(row[0]) for row in rows]

    async def events_after(self, job_id: str, after: int = 0) -> list[StoredEvent]:
        rows = await self._fetch(
            "SELECT seq, name, data FROM events WHERE job_id=%s AND seq>%s ORDER BY seq",
            (job_id, after),
        )
        return [StoredEvent(int(seq), str(name), dict(data)) for seq, name, data in rows]

    async def get_artifact(self, job_id: str, kind: str) -> tuple[str, bytes] | None:
        rows = await self._fetch(
            "SELECT media_type, content FROM artifacts WHERE job_id=%s AND kind=%s", (job_id, kind)
        )
        if not rows:
            return None
        return str(rows[0][0]), self.sealer.open(bytes(rows[0][1]), job_id, kind)

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(f"SELECT {COLS} FROM jobs WHERE id=%s", (job_id,))
        return job_record(rows[0]) if rows else None

    async def find_job(self, kind: str, key: str, value: str) -> JobRecord | None:
        rows = await self._fetch(
            f"SELECT {COLS} FROM jobs WHERE kind=%s AND meta->>%s = %s ORDER BY created DESC "
            "LIMIT 1",
            (kind, key, value),
        )
        return job_record(rows[0]) if rows else None

    async def get_case(self, job_id: str) -> tuple[dict[str, Any], bytes] | None:
        rows = await self._fetch("SELECT record, data FROM cases WHERE job_id=%s", (job_id,))
        if not rows:
            return None
        return dict(rows[0][0]), self.sealer.open(bytes(rows[0][1]), job_id, "case")

    async def writable(self) -> bool:
        return await self.probe.ok()

    async def ping(self) -> bool:
        try:
            await self._fetch("SELECT 1")
        except Exception:
            return False
        return True

    async def probe_write(self) -> None:
        """A small real write (readiness): fails on a read-only or full database."""
        await self._fetch(
            "INSERT INTO write_probe (id, at) VALUES (1, now()) "
            "ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at RETURNING id"
        )

    async def check_key(self) -> None:
        """Start-up: the configured key opens the newest stored case (`SealingKeyError`)."""
        rows = await self._fetch(
            "SELECT c.job_id, c.data FROM cases c JOIN jobs j ON j.id = c.job_id "
            "ORDER BY j.created DESC LIMIT 1"
        )
        if rows:
            self.sealer.check(bytes(rows[0][1]), str(rows[0][0]), "case")

    async def indexed_jobs(
        self, artifact: str, client: str | None = None
    ) -> list[tuple[JobRecord, bytes]]:
        cols = ", ".join(f"j.{c.strip()}" for c in COLS.split(","))
        sql = (
            f"SELECT {cols}, a.content FROM jobs j JOIN artifacts a "
            "ON a.job_id = j.id AND a.kind = %s WHERE j.status = 'completed'"
        )
        args: tuple[str, ...] = (artifact,)
        if client is not None:
            sql += " AND COALESCE(j.meta->>'client', 'anonymous') = %s"
            args += (client,)
        rows = await self._fetch(sql + " ORDER BY j.created DESC, j.id DESC", args)
        records = [job_record(row[:-1]) for row in rows]
        return [
            (job, self.sealer.open(bytes(row[-1]), job.id, artifact))
            for job, row in zip(records, rows, strict=True)
        ]
