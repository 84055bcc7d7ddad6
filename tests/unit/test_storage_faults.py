"""Storage faults with the real SQLite: a write the database refuses is `StorageFull` (507) or
`StorageFault` (503), readiness sees it, and a running case ends — its blocking waiter is
answered even when the `error` event itself cannot be written.

The faults are SQLite's own conditions on the store's connection, not mocks:
`PRAGMA max_page_count` makes the database full (SQLITE_FULL, as on a full disk) and
`PRAGMA query_only` makes it refuse every write (SQLITE_READONLY, as on a read-only data
directory). A size-limited real filesystem is driven end to end in
`tests/integration/test_storage_http.py`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from service.errors import StorageFault, StorageFull
from service.intake.cases import Limits
from service.jobs import JobManager
from service.pipeline.domain import Attachment, Report
from service.store import SqliteStore
from service.store.postgres import PostgresStore
from service.worker import Worker
from tests.support.factories import ScriptedNarrator, fake_deps, intake
from tests.support.postgres import PostgresServer
from tests.support.postgres_fixture import postgres  # noqa: F401

pytestmark = pytest.mark.anyio
CASE = ({"version": 1, "case_id": "x"}, b"\xff\xd8" + b"photo" * 40_000)


def full(store: SqliteStore, spare_pages: int = 0) -> None:
    """The database may grow by `spare_pages` pages at most (then SQLITE_FULL)."""
    with store.db._lock:
        pages = store.db._db.execute("PRAGMA page_count").fetchone()[0]
        store.db._db.execute(f"PRAGMA max_page_count={pages + spare_pages}")


def read_only(store: SqliteStore, on: bool = True) -> None:
    with store.db._lock:
        store.db._db.execute(f"PRAGMA query_only={int(on)}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    made = SqliteStore(tmp_path / "s.db")
    made.probe.ttl_s = 0.0
    yield made
    await made.close()


async def test_a_full_database_is_507_and_a_read_only_one_503(store: SqliteStore) -> None:
    assert await store.writable()
    full(store)
    with pytest.raises(StorageFull) as refused:
        await store.create_job("j1", "diagnose", {}, CASE)
    assert refused.value.status == 507 and refused.value.problem()["code"] == "insufficient-storage"
    assert await store.get_job("j1") is None  # nothing half-written
    full(store, 10_000)
    read_only(store)
    with pytest.raises(StorageFault) as refused_ro:
        await store.create_job("j1", "diagnose", {}, CASE)
    assert refused_ro.value.status == 503 and refused_ro.value.retry_after > 0
    assert not await store.writable()
    assert await store.ping()  # reads still answer
    read_only(store, False)
    assert await store.writable()  # recovers once writes succeed again
    await store.create_job("j1", "diagnose", {}, CASE)  # the connection was not left in a tx
    assert await store.get_case("j1") == CASE


async def test_a_failed_write_turns_readiness_off_until_a_probe_succeeds(
    store: SqliteStore,
) -> None:
    store.probe.ttl_s = 60.0
    assert await store.writable()
    full(store)
    with pytest.raises(StorageFull):
        await store.create_job("j1", "diagnose", {}, CASE)
    assert not await store.writable()  # at once, without waiting for the next probe


class BigPdfRenderer:
    """A 2 MB 'PDF': more than the pages a nearly full database has left."""

    def render(
        self,
        report: Report,
        image: Image.Image,
        heatmap_png: bytes | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> bytes:
        return b"%PDF-big " + bytes(2_000_000)


async def jobs_over(store: SqliteStore, narrator: ScriptedNarrator, **deps: object) -> JobManager:
    made = fake_deps(narrator=narrator, **deps)
    worker = Worker(store, made, Limits(), concurrency=2, lease_s=2.0)
    await worker.start()
    return JobManager(store, made, Limits(), worker=worker)


async def test_a_running_case_ends_with_an_error_event_when_the_disk_fills(
    store: SqliteStore,
) -> None:
    narrator = ScriptedNarrator(40, 0.02)
    jobs = await jobs_over(store, narrator, renderer=BigPdfRenderer())
    try:
        submission = await jobs.submit(intake().case, kind="diagnose")
        while narrator.produced < 2:
            await asyncio.sleep(0.01)
        full(store, spare_pages=64)  # room for events, not for the PDF
        result = await asyncio.wait_for(submission.result(), 20)  # hang guard
        assert result.error is not None and result.error["status"] == 507
        assert result.error["code"] == "insufficient-storage"
        events = await store.events_after(submission.job_id)
        assert events[-1].name == "error" and events[-1].data["stage"] == "store"
        job = await store.get_job(submission.job_id)
        assert job is not None and job.status == "failed"
    finally:
        assert jobs.worker is not None
        await jobs.worker.stop(0)


async def test_the_waiter_is_released_when_even_the_error_event_cannot_be_written(
    store: SqliteStore,
) -> None:
    narrator = ScriptedNarrator(30, 0.02)
    jobs = await jobs_over(store, narrator)
    assert jobs.worker is not None
    try:
        submission = await jobs.submit(intake().case, kind="diagnose")
        while narrator.produced < 2:
            await asyncio.sleep(0.01)
        read_only(store)
        result = await asyncio.wait_for(submission.result(), 20)  # hang guard
        assert result.error is not None and result.error["status"] == 503
        assert result.error["code"] == "storage-unavailable"
        names = [e.name for e in await store.events_after(submission.job_id)]
        assert "error" not in names and "completed" not in names  # the store took nothing
        read_only(store, False)
        # the store takes writes again: the case is claimed again once its lease expires and
        # runs to the end (the worker's loops survived the fault)
        for _ in range(300):
            job = await store.get_job(submission.job_id)
            if job is not None and job.finished:
                break
            await asyncio.sleep(0.05)
        assert job is not None and (job.status, job.attempt) == ("completed", 2)
        assert (await jobs.result(submission.job_id)).completed
    finally:
        await jobs.worker.stop(0)


async def test_a_read_only_postgresql_is_503_and_readiness_follows(
    postgres: PostgresServer,  # noqa: F811
) -> None:
    name = f"t{uuid.uuid4().hex[:12]}"
    store = PostgresStore(postgres.create_database(name))
    store.probe.ttl_s = 0.0
    try:
        await store.create_job("j1", "diagnose", {}, CASE)
        assert await store.writable()

        def read_only(on: bool) -> None:
            with psycopg.connect(postgres.dsn, autocommit=True) as admin:
                setting = "on" if on else "off"
                admin.execute(
                    f"ALTER DATABASE {name} SET default_transaction_read_only = {setting}"
                )
                admin.execute(  # the store's connections start again, with the setting
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )

        await asyncio.to_thread(read_only, True)
        for _ in range(3):  # the first calls may meet a terminated connection: also a fault
            with pytest.raises(StorageFault) as refused:
                await store.create_job("j2", "diagnose", {}, CASE)
        assert (
            refused.value.status == 503 and refused.value.problem()["code"] == "storage-unavailable"
        )
        assert not await store.writable()
        assert await store.get_case("j1") == CASE  # reads still answer
        await asyncio.to_thread(read_only, False)
        for _ in range(3):
            if await store.writable():
                break
        assert await store.writable()
        await store.create_job("j2", "diagnose", {}, CASE)
    finally:
        await store.close()
