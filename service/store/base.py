"""`JobStore`: the one interface over the job store (SQLite embedded, PostgreSQL for scale-out).

Semantics every backend keeps:
- A job is created *with its case* (record + original bytes) in one transaction, `queued`.
- Workers `claim` the oldest queued job — or a running one whose lease expired, which is then
  re-run from the start — setting `running`, the worker id, `attempt + 1` and a lease.
  A job that would exceed `max_attempts` is failed with a terminal `error` event instead.
- A worker writes events and artifacts through its `Fence` (worker id + attempt): once its
  lease is lost (expired and re-claimed, or released) its writes are refused, so a zombie
  worker never interleaves with the one that took over. `renew` extends the lease and tells the
  worker whether a cancel was requested (from any replica) or the lease was lost.
- Every job ends with a terminal event (`completed` or `error`) whatever happens to it.
- Events are `(job, seq)`, seq 1, 2, …: the SSE id and `Last-Event-ID`.
- A write the disk or database cannot take raises `StorageFull` (507) or `StorageFault` (503),
  never a bare driver error; `writable()` tells readiness.
- Photos and artifacts are sealed (AES-GCM) when a key is configured (`store.sealing`).
- The audit trail is append-only and has no foreign key to jobs: `prune` and `delete_job`
  never touch it, so a record outlives the case it describes.
"""

from __future__ import annotations

from typing import Any, Protocol

from service.store.dicom_records import DicomEntry, PendingObject
from service.store.records import (
    AuditRecord,
    Claim,
    Fence,
    JobRecord,
    LeaseState,
    StoredEvent,
)


class JobStore(Protocol):
    """Async job store; all database work happens off the event loop."""

    backend: str

    async def create_job(
        self, job_id: str, kind: str, meta: dict[str, Any], case: tuple[dict[str, Any], bytes]
    ) -> None:
        """Register a `queued` job and its case in one transaction."""
        ...

    async def count_active(self, client: str | None = None) -> int:
        """Jobs queued or running, of `client` when given (admission control)."""
        ...

    async def job_states(self) -> dict[str, int]:
        """Number of jobs per status (metrics)."""
        ...

    async def claim(self, worker: str, lease_s: float, max_attempts: int) -> Claim | None:
        """Lease the next job to run, or None when there is none."""
        ...

    async def renew(self, fence: Fence, lease_s: float) -> LeaseState:
        """Extend a lease; `cancel` when a cancel was requested, `lost` when it is gone."""
        ...

    async def release(self, fence: Fence) -> None:
        """Give a lease back unfinished (graceful shutdown): the job is queued again and the
        attempt does not count."""
        ...

    async def finish(self, fence: Fence, status: str) -> bool:
        """Set the final status (only while holding the lease)."""
        ...

    async def end(self, fence: Fence, status: str, name: str, data: dict[str, Any]) -> int | None:
        """The terminal event and the final status in one transaction (fenced); its seq."""
        ...

    async def expire_leases_of(self, workers: list[str]) -> int:
        """End the leases of workers known to be dead (e.g. a crashed process on this host)."""
        ...

    async def running_workers(self) -> list[str]:
        """Worker ids that hold a lease now."""
        ...

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job now (with its terminal event), or flag a running one for its
        worker; None when there is no such job."""
        ...

    async def cancel_requested(self, worker: str) -> list[str]:
        """Ids of jobs leased by `worker` whose cancel was requested."""
        ...

    async def append_event(
        self, job_id: str, name: str, data: dict[str, Any], fence: Fence | None = None
    ) -> int | None:
        """Persist an event (seq 1, 2, …) and wake followers; None when `fence` is stale."""
        ...

    async def events_after(self, job_id: str, after: int = 0) -> list[StoredEvent]:
        """Events with seq > after, in order."""
        ...

    async def wait_for_events(self, job_id: str, after: int, timeout: float) -> None:
        """Return when events after `after` may exist, or after `timeout` seconds."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a job may be ready to claim (or cancel requested), or after `timeout`."""
        ...

    async def put_artifact(
        self, job_id: str, kind: str, media_type: str, content: bytes, fence: Fence | None = None
    ) -> bool:
        """Store or replace an artifact (idempotent by job and kind); False when fenced out."""
        ...

    async def get_artifact(self, job_id: str, kind: str) -> tuple[str, bytes] | None:
        """(media_type, content), or None."""
        ...

    async def get_job(self, job_id: str) -> JobRecord | None:
        """A job by id."""
        ...

    async def find_job(self, kind: str, key: str, value: str) -> JobRecord | None:
        """The newest job of `kind` whose meta[key] equals value."""
        ...

    async def get_case(self, job_id: str) -> tuple[dict[str, Any], bytes] | None:
        """(`Case.record()`, original bytes) of a job."""
        ...

    async def indexed_jobs(
        self, artifact: str, client: str | None = None
    ) -> list[tuple[JobRecord, bytes]]:
        """Completed jobs holding the artifact `artifact` (a small search index), newest
        first, each with that artifact's content; only `client`'s when given (a job stored
        without an owner belongs to `anonymous`)."""
        ...

    async def delete_job(self, job_id: str) -> bool:
        """Erase a job with its case, events and artifacts."""
        ...

    async def prune(self) -> int:
        """Delete finished jobs past the retention age or count."""
        ...

    async def store_dicom_object(
        self, job_id: str, meta: dict[str, Any], record: dict[str, Any], data: bytes
    ) -> None:
        """Keep a DICOM object as it is: a `completed` job of kind `dicom-object` with the
        object as its case (record + bytes) and one terminal event, in one transaction."""
        ...

    async def dicom_pending(self, limit: int = 100) -> list[PendingObject]:
        """Stored DICOM objects (DICOM cases, DICOM artifacts) without an index row yet."""
        ...

    async def index_dicom(self, entries: list[DicomEntry]) -> None:
        """Add or replace index rows (by job and kind); rows of vanished jobs are dropped."""
        ...

    async def search_dicom(self, client: str | None, filters: dict[str, str]) -> list[DicomEntry]:
        """Index rows of `client` (every client's when None) matching the exact `filters`
        (keys from `dicom_records.SEARCH_KEYS`), ordered by study, series, instance."""
        ...

    async def append_audit(self, record: AuditRecord) -> None:
        """Append one audit record (never updated or deleted afterwards)."""
        ...

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
        """Audit records, newest first; `since` inclusive, `until` exclusive (ISO instants)."""
        ...

    async def get_audit(self, record_id: str) -> AuditRecord | None:
        """One audit record by id."""
        ...

    async def use_once(self, key: str, until: float) -> bool:
        """Record `key` as used until the epoch second `until`; False when it already was."""
        ...

    async def ping(self) -> bool:
        """True when the database answers (readiness)."""
        ...

    async def writable(self) -> bool:
        """True when a small real write succeeded lately (readiness; cached a few seconds)."""
        ...

    async def close(self) -> None:
        """Close connections."""
        ...
