"""The JobStore contract, on both backends: SQLite (embedded) and a real PostgreSQL.

Cases stored with their jobs, events in order, leases, fences, cancels, attempts, retention.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.store import Fence, JobStore, SqliteStore
from tests.support.postgres_fixture import postgres  # noqa: F401
from tests.support.stores import BACKENDS, open_backend

pytestmark = pytest.mark.anyio
CASE = ({"version": 1, "case_id": "x", "history": "자가 보고"}, b"\xff\xd8bytes")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    made = open_backend(request, tmp_path, retention_hours=1, max_jobs=2)
    yield made
    await made.close()


async def test_a_job_is_stored_with_its_case_and_events_in_order(store: JobStore) -> None:
    await store.create_job("j1", "diagnose", {"language": "ko"}, CASE)
    assert await store.get_case("j1") == CASE and await store.get_case("absent") is None
    job = await store.get_job("j1")
    assert job is not None and (job.status, job.attempt, job.meta) == (
        "queued",
        0,
        {"language": "ko"},
    )
    assert [await store.append_event("j1", n, {"i": i}) for i, n in enumerate("abc")] == [1, 2, 3]
    assert [e.name for e in await store.events_after("j1", 1)] == ["b", "c"]
    assert await store.put_artifact("j1", "pdf", "application/pdf", b"%PDF-1")
    assert await store.put_artifact("j1", "pdf", "application/pdf", b"%PDF-2")  # idempotent
    assert await store.get_artifact("j1", "pdf") == ("application/pdf", b"%PDF-2")
    assert (await store.find_job("diagnose", "language", "ko")) is not None
    assert await store.ping()


async def test_claims_are_exclusive_and_fenced(store: JobStore) -> None:
    await store.create_job("j1", "diagnose", {}, CASE)
    first, second = await asyncio.gather(store.claim("w1", 30, 3), store.claim("w2", 30, 3))
    claims = [c for c in (first, second) if c is not None]
    assert len(claims) == 1  # one job, one winner
    claim = claims[0]
    assert (claim.job.status, claim.job.attempt, claim.record, claim.data) == (
        "running",
        1,
        CASE[0],
        CASE[1],
    )
    assert await store.count_active() == 1
    fence = claim.fence
    assert await store.append_event("j1", "accepted", {}, fence) == 1
    stranger = Fence("j1", "w9", 1)
    assert await store.append_event("j1", "accepted", {}, stranger) is None
    assert not await store.put_artifact("j1", "pdf", "application/pdf", b"x", stranger)
    assert await store.renew(fence, 30) == "held" and await store.renew(stranger, 30) == "lost"
    assert await store.finish(fence, "completed")
    job = await store.get_job("j1")
    assert job is not None and job.status == "completed" and job.finished
    assert await store.claim("w1", 30, 3) is None


async def test_an_expired_lease_is_claimed_again_and_the_old_holder_fenced_out(
    store: JobStore,
) -> None:
    await store.create_job("j1", "diagnose", {}, CASE)
    dead = await store.claim("dead", 0.2, 3)
    assert dead is not None and not dead.expired
    await asyncio.sleep(0.4)
    taken = await store.claim("w2", 30, 3)
    assert taken is not None and taken.expired and taken.job.attempt == 2
    assert await store.append_event("j1", "late", {}, dead.fence) is None  # a zombie writes nothing
    assert await store.renew(dead.fence, 30) == "lost"
    assert await store.append_event("j1", "retrying", {}, taken.fence) == 1


async def test_attempts_run_out_with_a_terminal_event(store: JobStore) -> None:
    await store.create_job("j1", "diagnose", {}, CASE)
    for worker in ("w1", "w2"):
        assert await store.claim(worker, 0.1, 2) is not None
        await asyncio.sleep(0.25)
    assert await store.claim("w3", 30, 2) is None
    job = await store.get_job("j1")
    assert job is not None and job.status == "failed"
    last = (await store.events_after("j1"))[-1]
    assert last.name == "error" and last.data["code"] == "attempts-exhausted"


async def test_release_gives_the_case_back_without_spending_an_attempt(store: JobStore) -> None:
    await store.create_job("j1", "diagnose", {}, CASE)
    claim = await store.claim("w1", 30, 3)
    assert claim is not None
    await store.release(claim.fence)
    again = await store.claim("w2", 30, 3)
    assert again is not None and again.job.attempt == 1 and not again.expired


async def test_cancel_from_anywhere(store: JobStore) -> None:
    await store.create_job("queued", "diagnose", {}, CASE)
    job = await store.request_cancel("queued")  # not claimed yet: ends at once
    assert job is not None and job.status == "cancelled"
    assert (await store.events_after("queued"))[-1].data["code"] == "cancelled"
    await store.create_job("running", "diagnose", {}, CASE)
    claim = await store.claim("w1", 30, 3)
    assert claim is not None
    flagged = await store.request_cancel("running")
    assert flagged is not None and flagged.status == "running" and flagged.cancel_requested
    assert await store.cancel_requested("w1") == ["running"]
    assert await store.renew(claim.fence, 30) == "cancel"
    assert await store.request_cancel("absent") is None


async def test_dead_workers_leases_can_be_ended(store: JobStore) -> None:
    await store.create_job("j1", "diagnose", {}, CASE)
    assert await store.claim("host:1:dead", 300, 3) is not None
    assert await store.running_workers() == ["host:1:dead"]
    assert await store.expire_leases_of(["host:1:dead"]) == 1
    taken = await store.claim("w2", 30, 3)
    assert taken is not None and taken.expired


async def test_followers_are_woken_by_new_events(store: JobStore) -> None:
    await store.create_job("j1", "diagnose", {}, CASE)
    loop = asyncio.get_running_loop()

    async def later() -> None:
        await asyncio.sleep(0.1)
        await store.append_event("j1", "accepted", {})

    task = asyncio.create_task(later())
    started = loop.time()
    while not await store.events_after("j1"):
        await store.wait_for_events("j1", 0, 5.0)
    assert loop.time() - started < 3.0
    await task


async def test_prune_by_count_and_erasure(store: JobStore) -> None:
    for i in range(4):
        await store.create_job(f"j{i}", "diagnose", {}, CASE)
        claim = await store.claim("w", 30, 3)
        assert claim is not None
        await store.finish(claim.fence, "completed")
        await asyncio.sleep(0.01)
    await store.create_job("live", "diagnose", {}, CASE)
    assert await store.prune() == 2  # keep the newest 2 finished, never an unfinished one
    remaining = {j for j in ("j0", "j1", "j2", "j3", "live") if await store.get_job(j)}
    assert remaining == {"j2", "j3", "live"}
    assert await store.delete_job("j3") and await store.get_case("j3") is None
    assert not await store.delete_job("j3")


def test_an_older_sqlite_store_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, "
        "created TEXT NOT NULL, updated TEXT NOT NULL, heartbeat TEXT, meta TEXT NOT NULL)"
    )
    db.execute("INSERT INTO jobs VALUES ('old', 'diagnose', 'completed', 'a', 'b', NULL, '{}')")
    db.commit()
    db.close()
    job = SqliteStore(path).db.get_job("old")
    assert job is not None and (job.status, job.attempt, job.worker) == ("completed", 0, None)


async def test_a_key_is_used_once_across_processes(store: JobStore) -> None:
    import time

    until = time.time() + 60
    assert await store.use_once("ehr-1:jti-1", until)
    assert not await store.use_once("ehr-1:jti-1", until)  # replayed
    assert await store.use_once("ehr-1:jti-2", until)
    assert await store.use_once("ehr-1:old", time.time() - 1)  # expired ones are purged
    assert await store.use_once("ehr-1:old", until)
