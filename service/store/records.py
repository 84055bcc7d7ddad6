"""What the job store holds, as values shared by every backend."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

TERMINAL = frozenset({"completed", "failed", "cancelled"})
CANCELLED = {
    "type": "https://skinscreen.dev/problems/cancelled",
    "title": "The job was cancelled",
    "status": 409,
    "detail": "the job was cancelled at the client's request",
    "code": "cancelled",
}
EXHAUSTED = {
    "type": "https://skinscreen.dev/problems/attempts-exhausted",
    "title": "The job could not be completed",
    "status": 503,
    "detail": "the workers running this job stopped before it finished, on every attempt",
    "code": "attempts-exhausted",
}
#: What a worker learns when it renews its lease.
LeaseState = Literal["held", "cancel", "lost"]


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds (sorts as text)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def iso_in(seconds: float) -> str:
    """UTC now + `seconds`, as `now_iso` writes it."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class StoredEvent:
    """One persisted pipeline event."""

    seq: int
    name: str
    data: dict[str, Any]


@dataclass(frozen=True)
class JobRecord:
    """A job's row."""

    id: str
    kind: str
    status: str
    created: str
    updated: str
    meta: dict[str, Any]
    attempt: int = 0
    worker: str | None = None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class Fence:
    """Who may write for a running job: the worker holding the lease, at this attempt."""

    job_id: str
    worker: str
    attempt: int


@dataclass(frozen=True)
class Claim:
    """A job a worker has leased, with what it needs to run it."""

    job: JobRecord
    record: dict[str, Any]
    data: bytes
    #: True when the previous holder's lease expired (the job is re-run from the start).
    expired: bool

    @property
    def fence(self) -> Fence:
        return Fence(self.job.id, self.job.worker or "", self.job.attempt)
