"""Both job-store backends for a parametrized test: SQLite and a fresh database on the
session's real PostgreSQL (`tests.support.postgres_fixture`)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from service.store import JobStore, SqliteStore
from service.store.postgres import PostgresStore
from tests.support.postgres import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


def open_backend(
    request: pytest.FixtureRequest, tmp_path: Path, *, retention_hours: int, max_jobs: int
) -> JobStore:
    """The store `request.param` names (call from a fixture parametrized over BACKENDS)."""
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "s.db", retention_hours=retention_hours, max_jobs=max_jobs)
    server: PostgresServer = request.getfixturevalue("postgres")
    dsn = server.create_database(f"t{uuid.uuid4().hex[:12]}")
    return PostgresStore(dsn, retention_hours=retention_hours, max_jobs=max_jobs)
