"""`SqliteStore`: the embedded `JobStore` — the SQLite core run off the event loop.

Followers and workers in this process are woken at once; other processes sharing the file
notice within a poll interval. A database error that means the disk is full or not writable
is raised as `StorageFull` (507) / `StorageFault` (503) (`service.store.faults`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from service.errors import StoredDataUnreadable
from service.store.faults import WriteProbe, storage_fault
from service.store.records import (
    AuditRecord,
    Claim,
    Fence,
    JobRecord,
    LeaseState,
    StoredEvent,
)
from service.store.sealing import Sealer
from service.store.sqlite import SqliteDb
from service.store.sqlite_dicom import SqliteDicomIndexAsync
from service.store.wakeups import Wakeups

T = TypeVar("T")
POLL_S = 0.25


class SqliteStore(SqliteDicomIndexAsync):
    """Async `JobStore` over one SQLite file."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        retention_hours: int = 72,
        max_jobs: int = 2000,
        sealer: Sealer | None = None,
    ) -> None:
        self.db = SqliteDb(path, retention_hours, max_jobs, sealer)
        self._events = Wakeups()
        self._work = Wakeups()
        self.probe = WriteProbe(lambda: self._run(self.db.probe_write))

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(call, *args)
        except Exception as exc:
            fault = storage_fault(exc)
            if fault is None:
                raise
            if not isinstance(fault, StoredDataUnreadable):
                self.probe.failed()
            if fault is exc:
                raise
            raise fault from exc

    async def create_job(
        self, job_id: str, kind: str, meta: dict[str, Any], case: tuple[dict[str, Any], bytes]
    ) -> None:
        await self._run(self.db.create_job, job_id, kind, meta, case)
        self._work.wake("work")

    async def count_active(self, client: str | None = None) -> int:
        return await self._run(self.db.count_active, client)

    async def job_states(self) -> dict[str, int]:
        return await self._run(self.db.job_states)

    async def claim(self, worker: str, lease_s: float, max_attempts: int) -> Claim | None:
        return await self._run(self.db.claim, worker, lease_s, max_attempts)

    async def renew(self, fence: Fence, lease_s: float) -> LeaseState:
        return await self._run(self.db.renew, fence, lease_s)

    async def release(self, fence: Fence) -> None:
        await self._run(self.db.release, fence)
        self._work.wake("work")

    async def finish(self, fence: Fence, status: str) -> bool:
        return await self._run(self.db.finish, fence, status)

    async def end(self, fence: Fence, status: str, name: str, data: dict[str, Any]) -> int | None:
        seq = await self._run(self.db.end, fence, status, name, data)
        if seq is not None:
            self._events.wake(fence.job_id)
        return seq

    async def expire_leases_of(self, workers: list[str]) -> int:
        expired = await self._run(self.db.expire_leases_of, workers)
        self._work.wake("work")
        return expired

    async def running_workers(self) -> list[str]:
        return await self._run(self.db.running_workers)

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        job = await self._run(self.db.request_cancel, job_id)
        self._events.wake(job_id)
        self._work.wake("work")
        return job

    async def cancel_requested(self, worker: str) -> list[str]:
        return await self._run(self.db.cancel_requested, worker)

    async def append_event(
        self, job_id: str, name: str, data: dict[str, Any], fence: Fence | None = None
    ) -> int | None:
        seq = await self._run(self.db.append_event, job_id, name, data, fence)
        if seq is not None:
            self._events.wake(job_id)
        return seq

    async def events_after(self, job_id: str, after: int = 0) -> list[StoredEvent]:
        return await self._run(self.db.events_after, job_id, after)

    async def wait_for_events(self, job_id: str, after: int, timeout: float) -> None:
        await self._events.wait(job_id, min(timeout, POLL_S))

    async def wait_for_work(self, timeout: float) -> None:
        await self._work.wait("work", min(timeout, POLL_S * 2))

    async def put_artifact(
        self, job_id: str, kind: str, media_type: str, content: bytes, fence: Fence | None = None
    ) -> bool:
        return await self._run(self.db.put_artifact, job_id, kind, media_type, content, fence)

    async def get_artifact(self, job_id: str, kind: str) -> tuple[str, bytes] | None:
        return await self._run(self.db.get_artifact, job_id, kind)

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._run(self.db.get_job, job_id)

    async def find_job(self, kind: str, key: str, value: str) -> JobRecord | None:
        return await self._run(self.db.find_job, kind, key, value)

    async def get_case(self, job_id: str) -> tuple[dict[str, Any], bytes] | None:
        return await self._run(self.db.get_case, job_id)

    async def indexed_jobs(
        self, artifact: str, client: str | None = None
    ) -> list[tuple[JobRecord, bytes]]:
        return await self._run(self.db.indexed_jobs, artifact, client)

    async def delete_job(self, job_id: str) -> bool:
        return await self._run(self.db.delete_job, job_id)

    async def prune(self) -> int:
        return await self._run(self.db.prune)

    async def append_audit(self, record: AuditRecord) -> None:
        await self._run(self.db.append_audit, record)

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
        return await self._run(self.db.audit_records, client, since, until, action, limit, offset)

    async def get_audit(self, record_id: str) -> AuditRecord | None:
        return await self._run(self.db.get_audit, record_id)

    async def use_once(self, key: str, until: float) -> bool:
        return await self._run(self.db.use_once, key, until)

    async def writable(self) -> bool:
        return await self.probe.ok()

    async def ping(self) -> bool:
        try:
            await self._run(self.db.job_states)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self._run(self.db.close)
