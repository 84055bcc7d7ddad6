"""The session-wide `postgres` fixture: one throwaway PostgreSQL cluster per test process.

Use it with `from tests.support.postgres_fixture import postgres  # noqa: F401`. Skips loudly
where PostgreSQL is not installed; fails instead under CI (CI=true), like `shared_dir`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ci import IN_CI
from tests.support.postgres import PostgresServer, postgres_available, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running cluster; `postgres.dsn` is a database owned by user `skinscreen`."""
    reason = postgres_available()
    if reason is not None:
        message = f"POSTGRESQL MISSING: {reason}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    # Not tmp_path_factory: under root its 0700 /tmp/pytest-of-root is closed to the
    # `postgres` user that the server runs as (and unix socket paths must stay short).
    server = start_postgres(Path(tempfile.mkdtemp(prefix="skinscreen-pg-")))
    try:
        yield server
    finally:
        server.stop()
