"""`PostgresStore`: the `JobStore` for N replicas and workers (psycopg 3 async + a pool).

Claims use `SELECT … FOR UPDATE SKIP LOCKED`; every event append NOTIFYs its job's id, so a
follower on any replica is woken at once (`Listener`); a poll every few seconds covers a lost
LISTEN connection. Artifacts live in the database (`bytea`), sealed like the photos when a
key is configured. A full or read-only database raises `StorageFull` / `StorageFault`
(`faults.raising_faults`).
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from service.errors import StoredDataUnreadable
from service.store.faults import WriteProbe, raising_faults
from service.store.postgres_audit import PostgresAudit
from service.store.postgres_dicom import PostgresDicomIndex
from service.store.postgres_reads import PostgresReads
from service.store.postgres_schema import (
    COLS,
    EVENTS_CHANNEL,
    HELD,
    WORK_CHANNEL,
    Conn,
    Listener,
    fence_key,
    job_record,
    migrate,
)
from service.store.records import (
    CANCELLED,
    EXHAUSTED,
    Claim,
    Fence,
    JobRecord,
    LeaseState,
)
from service.store.sealing import Sealer
from service.store.wakeups import Wakeups

POLL_S = 2.0


@raising_faults
class PostgresStore(PostgresReads, PostgresAudit, PostgresDicomIndex):
    """Async `JobStore` on PostgreSQL."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        retention_hours: int = 72,
        max_jobs: int = 2000,
        sealer: Sealer | None = None,
    ) -> None:
        self.url = url
        self.sealer = sealer or Sealer()
        self.probe = WriteProbe(self.probe_write)
        self.retention_hours = retention_hours
        self.max_jobs = max_jobs
        self._pool: AsyncConnectionPool | None = None
        self._events, self._work = Wakeups(), Wakeups()
        self._listener = Listener(url, self._events, self._work)

    async def _open(self) -> AsyncConnectionPool:
        if self._pool is None:
            pool = AsyncConnectionPool(self.url, min_size=1, max_size=10, open=False)
            await pool.open(wait=True, timeout=30)
            async with pool.connection() as conn:
                await migrate(conn)
            self._pool = pool
            try:
                await self.check_key()
            except Exception:
                self._pool = None
                await pool.close()
                raise
        self._listener.ensure_started()
        return self._pool

    async def _fetch(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        async with (await self._open()).connection() as conn:
            cursor = await conn.execute(sql, args)  # type: ignore[arg-type]
            return await cursor.fetchall()

    async def create_job(
        self, job_id: str, kind: str, meta: dict[str, Any], case: tuple[dict[str, Any], bytes]
    ) -> None:
        record, data = case
        async with (await self._open()).connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO jobs (id, kind, status, meta) VALUES (%s, %s, 'queued', %s)",
                (job_id, kind, Jsonb(meta)),
            )
            await conn.execute(
                "INSERT INTO cases (job_id, record, data) VALUES (%s, %s, %s)",
                (job_id, Jsonb(record), self.sealer.seal(data, job_id, "case")),
            )
            await conn.execute("SELECT pg_notify(%s, %s)", (WORK_CHANNEL, job_id))

    async def claim(self, worker: str, lease_s: float, max_attempts: int) -> Claim | None:
        async with (await self._open()).connection() as conn:
            while True:
                async with conn.transaction():
                    cursor = await conn.execute(
                        f"SELECT {COLS}, status='running' FROM jobs WHERE status='queued' "
                        "OR (status='running' AND lease_until < now()) ORDER BY created "
                        "LIMIT 1 FOR UPDATE SKIP LOCKED"
                    )
                    row = await cursor.fetchone()
                    if row is None:
                        return None
                    job, expired = job_record(row[:-1]), bool(row[-1])
                    if job.attempt >= max_attempts or job.cancel_requested:
                        status, problem = (
                            ("cancelled", dict(CANCELLED))
                            if job.cancel_requested
                            else ("failed", dict(EXHAUSTED))
                        )
                        await self._end(conn, job.id, status, problem)
                        continue
                    cursor = await conn.execute(
                        "UPDATE jobs SET status='running', worker=%s, attempt=attempt+1, "
                        "lease_until=now() + make_interval(secs => %s), updated=now() "
                        f"WHERE id=%s RETURNING {COLS}",
                        (worker, lease_s, job.id),
                    )
                    claimed = job_record(await cursor.fetchone())
                    cursor = await conn.execute(
                        "SELECT record, data FROM cases WHERE job_id=%s", (job.id,)
                    )
                    case = await cursor.fetchone()
                    assert case is not None  # created with its job
                    try:
                        data = self.sealer.open(bytes(case[1]), job.id, "case")
                    except StoredDataUnreadable as exc:
                        await self._end(conn, job.id, "failed", exc.problem())
                        continue
                    return Claim(claimed, dict(case[0]), data, expired)

    async def _end(self, conn: Conn, job_id: str, status: str, problem: dict[str, Any]) -> None:
        await conn.execute(
            "UPDATE jobs SET status=%s, worker=NULL, lease_until=NULL, updated=now() WHERE id=%s",
            (status, job_id),
        )
        await self._insert_event(conn, job_id, "error", problem)

    @staticmethod
    async def _insert_event(conn: Conn, job_id: str, name: str, data: dict[str, Any]) -> int:
        cursor = await conn.execute(
            "INSERT INTO events (job_id, seq, name, data) SELECT %s, COALESCE(MAX(seq), 0) + 1, "
            "%s, %s FROM events WHERE job_id=%s RETURNING seq",
            (job_id, name, Jsonb(data), job_id),
        )
        row = await cursor.fetchone()
        await conn.execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, job_id))
        return int(row[0])  # type: ignore[index]

    async def renew(self, fence: Fence, lease_s: float) -> LeaseState:
        rows = await self._fetch(
            "UPDATE jobs SET lease_until=now() + make_interval(secs => %s) "
            f"WHERE {HELD} RETURNING cancel_requested",
            (lease_s, *fence_key(fence)),
        )
        if not rows:
            return "lost"
        return "cancel" if rows[0][0] else "held"

    async def release(self, fence: Fence) -> None:
        await self._fetch(
            "UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, attempt=attempt-1, "
            f"updated=now() WHERE {HELD} RETURNING id",
            fence_key(fence),
        )
        await self._fetch("SELECT pg_notify(%s, %s)", (WORK_CHANNEL, fence.job_id))

    async def finish(self, fence: Fence, status: str) -> bool:
        rows = await self._fetch(
            "UPDATE jobs SET status=%s, worker=NULL, lease_until=NULL, updated=now() "
            f"WHERE {HELD} RETURNING id",
            (status, *fence_key(fence)),
        )
        return bool(rows)

    async def end(self, fence: Fence, status: str, name: str, data: dict[str, Any]) -> int | None:
        async with (await self._open()).connection() as conn, conn.transaction():
            cursor = await conn.execute(
                f"SELECT 1 FROM jobs WHERE {HELD} FOR UPDATE", fence_key(fence)
            )
            if await cursor.fetchone() is None:
                return None
            seq = await self._insert_event(conn, fence.job_id, name, data)
            await conn.execute(
                "UPDATE jobs SET status=%s, worker=NULL, lease_until=NULL, updated=now() "
                "WHERE id=%s",
                (status, fence.job_id),
            )
            return seq

    async def expire_leases_of(self, workers: list[str]) -> int:
        rows = await self._fetch(
            "UPDATE jobs SET lease_until=now() - interval '1 second' "
            "WHERE status='running' AND worker = ANY(%s) RETURNING id",
            (workers,),
        )
        return len(rows)

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        async with (await self._open()).connection() as conn, conn.transaction():
            cursor = await conn.execute(
                f"SELECT {COLS} FROM jobs WHERE id=%s FOR UPDATE", (job_id,)
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            job = job_record(row)
            if job.status == "queued":
                await self._end(conn, job_id, "cancelled", dict(CANCELLED))
            elif job.status == "running":
                await conn.execute("UPDATE jobs SET cancel_requested=true WHERE id=%s", (job_id,))
                await conn.execute("SELECT pg_notify(%s, %s)", (WORK_CHANNEL, job_id))
        return await self.get_job(job_id)

    async def append_event(
        self, job_id: str, name: str, data: dict[str, Any], fence: Fence | None = None
    ) -> int | None:
        async with (await self._open()).connection() as conn, conn.transaction():
            if fence is not None:
                cursor = await conn.execute(
                    f"SELECT 1 FROM jobs WHERE {HELD} FOR UPDATE", fence_key(fence)
                )
                if await cursor.fetchone() is None:
                    return None
            else:
                await conn.execute("SELECT 1 FROM jobs WHERE id=%s FOR UPDATE", (job_id,))
            return await self._insert_event(conn, job_id, name, data)

    async def wait_for_events(self, job_id: str, after: int, timeout: float) -> None:
        await self._open()
        await self._events.wait(job_id, min(timeout, POLL_S))

    async def wait_for_work(self, timeout: float) -> None:
        await self._open()
        await self._work.wait("work", min(timeout, POLL_S))

    async def put_artifact(
        self, job_id: str, kind: str, media_type: str, content: bytes, fence: Fence | None = None
    ) -> bool:
        guard = f"AND EXISTS (SELECT 1 FROM jobs WHERE {HELD})" if fence else ""
        args = (*fence_key(fence),) if fence else ()
        rows = await self._fetch(
            "INSERT INTO artifacts (job_id, kind, media_type, content) "
            f"SELECT %s, %s, %s, %s WHERE true {guard} "
            "ON CONFLICT (job_id, kind) DO UPDATE SET media_type=EXCLUDED.media_type, "
            "content=EXCLUDED.content RETURNING kind",
            (job_id, kind, media_type, self.sealer.seal(content, job_id, kind), *args),
        )
        return bool(rows)

    async def delete_job(self, job_id: str) -> bool:
        return bool(await self._fetch("DELETE FROM jobs WHERE id=%s RETURNING id", (job_id,)))

    async def prune(self) -> int:
        finished = "status IN ('completed','failed','cancelled')"
        old = await self._fetch(
            f"DELETE FROM jobs WHERE {finished} AND created < now() - make_interval(hours => %s) "
            "RETURNING id",
            (self.retention_hours,),
        )
        beyond = await self._fetch(
            f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {finished} "
            "ORDER BY created DESC OFFSET %s) RETURNING id",
            (self.max_jobs,),
        )
        return len(old) + len(beyond)

    async def use_once(self, key: str, until: float) -> bool:
        await self._fetch(
            "DELETE FROM used_once WHERE until < extract(epoch FROM now()) RETURNING key"
        )
        rows = await self._fetch(
            "INSERT INTO used_once (key, until) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING RETURNING key",
            (key, until),
        )
        return bool(rows)

    async def close(self) -> None:
        await self._listener.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
