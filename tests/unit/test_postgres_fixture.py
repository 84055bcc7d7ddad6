"""The throwaway PostgreSQL cluster works, and supports what the job store will rely on:
`FOR UPDATE SKIP LOCKED` claiming and LISTEN/NOTIFY between connections."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from tests.support.postgres import PostgresServer
from tests.support.postgres_fixture import postgres  # noqa: F401

pytestmark = pytest.mark.anyio

CLAIM = "SELECT id FROM claim_demo WHERE NOT done ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"


async def test_server_settings(postgres: PostgresServer) -> None:  # noqa: F811
    async with await psycopg.AsyncConnection.connect(postgres.dsn) as conn:
        cur = await conn.execute(
            "SELECT current_user, current_database(), current_setting('max_connections'), "
            "current_setting('fsync'), pg_encoding_to_char(encoding) "
            "FROM pg_database WHERE datname = current_database()"
        )
        assert await cur.fetchone() == ("skinscreen", "skinscreen", "200", "off", "UTF8")
    assert postgres.host == "127.0.0.1" and postgres.data_dir.is_dir()


async def test_skip_locked_claims_distinct_rows(postgres: PostgresServer) -> None:  # noqa: F811
    dsn = postgres.create_database("skip_locked_demo")
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as setup,
        await psycopg.AsyncConnection.connect(dsn) as first,
        await psycopg.AsyncConnection.connect(dsn) as second,
    ):
        await setup.execute(
            "CREATE TABLE claim_demo (id int PRIMARY KEY, done bool NOT NULL DEFAULT false)"
        )
        await setup.execute("INSERT INTO claim_demo (id) VALUES (1), (2)")
        with anyio.fail_after(10):
            async with first.transaction():
                claimed_first = await (await first.execute(CLAIM)).fetchone()
                async with second.transaction():
                    # Row 1 is locked by `first`: `second` skips it instead of waiting.
                    claimed_second = await (await second.execute(CLAIM)).fetchone()
                    async with setup.transaction():
                        # Both rows locked: nothing left to claim, and still no waiting.
                        assert await (await setup.execute(CLAIM)).fetchone() is None
                    await second.execute("UPDATE claim_demo SET done = true WHERE id = 2")
            assert (claimed_first, claimed_second) == ((1,), (2,))
            # `first` committed without marking row 1 done: its lock is gone, it is claimable.
            async with second.transaction():
                assert await (await second.execute(CLAIM)).fetchone() == (1,)


async def test_listen_notify_between_connections(postgres: PostgresServer) -> None:  # noqa: F811
    async with (
        await psycopg.AsyncConnection.connect(postgres.dsn, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(postgres.dsn, autocommit=True) as notifier,
    ):
        await listener.execute("LISTEN job_events")
        with anyio.fail_after(10):
            async with notifier.transaction():
                await notifier.execute("SELECT pg_notify('job_events', 'job-1:accepted')")
                # Not delivered before the notifying transaction commits.
                early = [n async for n in listener.notifies(timeout=0.3)]
                assert early == []
            await notifier.execute("NOTIFY job_events, 'job-1:completed'")
            got = [n async for n in listener.notifies(timeout=5, stop_after=2)]
        assert [(n.channel, n.payload) for n in got] == [
            ("job_events", "job-1:accepted"),
            ("job_events", "job-1:completed"),
        ]
        assert {n.pid for n in got} == {notifier.info.backend_pid}
