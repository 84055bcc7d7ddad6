"""The job store: cases, jobs, their events and artifacts, behind one interface (`JobStore`).

`open_store(settings)` picks the backend: PostgreSQL when `database_url` is a
`postgresql://` URL, else the embedded SQLite file (the default, no configuration). With
`encryption_key_file` set, both seal the photos and artifacts (`store.sealing`); a key file
that cannot be used raises `SealingKeyError` with a message that says why.
"""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings
from service.store.base import JobStore
from service.store.records import (
    CANCELLED,
    EXHAUSTED,
    TERMINAL,
    Claim,
    Fence,
    JobRecord,
    LeaseState,
    StoredEvent,
)
from service.store.sealing import Sealer, SealingKeyError
from service.store.sqlite import SqliteDb
from service.store.sqlite_store import SqliteStore

__all__ = [
    "CANCELLED",
    "EXHAUSTED",
    "TERMINAL",
    "Claim",
    "Fence",
    "JobRecord",
    "JobStore",
    "LeaseState",
    "Sealer",
    "SealingKeyError",
    "SqliteDb",
    "SqliteStore",
    "StoredEvent",
    "open_store",
]


def open_store(settings: Settings, path: Path | str | None = None) -> JobStore:
    """The configured store; `path` overrides the SQLite file (":memory:" keeps nothing)."""
    url = settings.database_url
    sealer = Sealer.from_file(settings.encryption_key_file)
    keep = (settings.job_retention_hours, settings.max_jobs_stored)
    if url and url.startswith(("postgresql://", "postgres://")) and path is None:
        from service.store.postgres import PostgresStore

        return PostgresStore(url, *keep, sealer=sealer)
    target = Path(path) if path is not None else settings.sqlite_path
    return SqliteStore(target, *keep, sealer=sealer)
