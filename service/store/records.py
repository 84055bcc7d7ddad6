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


def utc_ms(text: str) -> str:
    """An ISO 8601 date or instant as `now_iso` writes it (UTC, milliseconds; naive = UTC)."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the append-only audit trail: who did what to which resource, when, from
    where, and how it ended. Codes and resource ids only — never PHI or free text."""

    id: str
    #: ISO 8601 UTC with milliseconds, as `now_iso()` writes it.
    at: str
    #: The client id (OAuth client, or the auth layer's name for an anonymous caller).
    client: str
    #: create | read | update | delete | execute | token | login (a short code).
    action: str
    #: DiagnosticReport, Binary, Job, Instance, Token, …
    resource_type: str
    resource_id: str | None
    #: success | denied | not-found | failed.
    outcome: str
    #: The client's network address.
    source: str | None
    #: A short machine code (e.g. `insufficient_scope`), never free text.
    detail: str | None
