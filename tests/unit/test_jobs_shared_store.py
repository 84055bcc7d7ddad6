"""Several processes on one store: followers anywhere, resumed cases, fenced zombies, cancel
from any replica. (Real separate processes: tests/integration/test_scale_out.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.intake.cases import Limits
from service.jobs import JobManager
from service.store import SqliteStore
from service.worker import Worker
from tests.support.factories import ScriptedNarrator, fake_deps, intake

pytestmark = pytest.mark.anyio


class Replica:
    """One 'process': its own store connection, an API side and optionally a worker."""

    def __init__(self, path: Path, narrator: ScriptedNarrator | None, lease_s: float) -> None:
        self.store = SqliteStore(path)
        deps = fake_deps(narrator=narrator or ScriptedNarrator(3, 0.01))
        self.worker = (
            Worker(self.store, deps, Limits(), lease_s=lease_s) if narrator is not None else None
        )
        self.jobs = JobManager(self.store, deps, Limits(), worker=self.worker)


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        if replica.worker is not None:
            await replica.worker.stop(0)
        await replica.store.close()


async def start(
    made: list[Replica], path: Path, narrator: ScriptedNarrator | None, lease_s: float = 3.0
) -> Replica:
    replica = Replica(path, narrator, lease_s)
    if replica.worker is not None:
        await replica.worker.start()
    made.append(replica)
    return replica


async def test_a_case_submitted_here_is_followed_and_cancelled_there(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    path = tmp_path / "jobs.db"
    api_only = await start(replicas, path, None)  # `serve --no-worker`
    worker = await start(replicas, path, ScriptedNarrator(chunks=40, delay_s=0.05))
    done = await api_only.jobs.submit(intake().case, kind="diagnose")
    followed = [e async for e in worker.jobs.follow(done.job_id) if e is not None]
    assert followed[-1].name == "completed"
    assert [e.seq for e in followed] == list(range(1, len(followed) + 1))
    assert (await done.result()).completed
    slow = await api_only.jobs.submit(intake().case, kind="diagnose")
    async for event in api_only.jobs.follow(slow.job_id):
        if event is not None and event.name == "report.delta":
            break
    await api_only.jobs.cancel(slow.job_id)  # the worker runs it in another "process"
    result = await asyncio.wait_for(slow.result(), 5)
    assert result.error is not None and result.error["code"] == "cancelled"
    job = await worker.jobs.get(slow.job_id)
    assert job is not None and job.status == "cancelled"


async def test_a_case_of_a_dead_process_is_resumed_not_lost(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    path = tmp_path / "jobs.db"
    crashed = await start(replicas, path, None)
    case = intake().case
    await crashed.jobs.submit(case, kind="diagnose")
    # the dead process had claimed it: its pid no longer exists on this host
    claim = await crashed.store.claim("vm-test:999999:dead", 300, 3)
    assert claim is not None
    await crashed.store.append_event(case.case_id, "accepted", {}, claim.fence)
    await crashed.store.close()
    replicas.remove(crashed)
    restarted = Replica(path, ScriptedNarrator(3, 0.01), 3.0)
    # a worker on another host: only its lease tells it is gone (here: ended by hand)
    await restarted.store.expire_leases_of(["vm-test:999999:dead"])
    replicas.append(restarted)
    assert restarted.worker is not None
    await restarted.worker.start()
    result = await asyncio.wait_for(restarted.jobs.result(case.case_id), 10)
    assert result.completed and result.pdf is not None
    names = [e.name for e in await restarted.store.events_after(case.case_id)]
    assert names[:3] == ["accepted", "retrying", "accepted"] and names[-1] == "completed"
    assert names.count("completed") == 1 and names.count("pdf.ready") == 1
    job = await restarted.jobs.get(case.case_id)
    assert job is not None and job.attempt == 2 and job.status == "completed"


async def test_a_crashed_process_on_this_host_is_taken_over_at_start(
    tmp_path: Path, replicas: list[Replica]
) -> None:
    import socket

    path = tmp_path / "jobs.db"
    store = SqliteStore(path)
    case = intake().case
    await store.create_job(
        case.case_id, "diagnose", {"mode": "diagnose"}, (case.record(), case.data)
    )
    assert await store.claim(f"{socket.gethostname()}:999999:gone", 300, 3) is not None
    await store.close()
    restarted = await start(replicas, path, ScriptedNarrator(3, 0.01), lease_s=300)
    result = await asyncio.wait_for(restarted.jobs.result(case.case_id), 10)  # not 300 s
    assert result.completed


async def test_a_zombie_worker_is_fenced_out(tmp_path: Path, replicas: list[Replica]) -> None:
    path = tmp_path / "jobs.db"
    zombie = await start(replicas, path, ScriptedNarrator(chunks=40, delay_s=0.05), lease_s=0.6)
    assert zombie.worker is not None
    submitted = await zombie.jobs.submit(intake().case, kind="diagnose")
    for task in zombie.worker._tasks:  # stop renewing: the lease will expire mid-run
        if task.get_name() == "worker-leases":
            task.cancel()
    await asyncio.sleep(0.8)
    rescuer = await start(replicas, path, ScriptedNarrator(3, 0.01))
    result = await asyncio.wait_for(rescuer.jobs.result(submitted.job_id), 15)
    assert result.completed
    events = await rescuer.store.events_after(submitted.job_id)
    after_retry = [e.name for e in events][[e.name for e in events].index("retrying") :]
    assert after_retry.count("report.delta") == 3  # no zombie delta after the take-over
    assert [e.name for e in events].count("completed") == 1
