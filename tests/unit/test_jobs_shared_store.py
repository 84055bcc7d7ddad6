"""Several processes on one store: nobody ends another's live job; stale ones get an ending."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from service.intake.cases import Limits
from service.jobs import JobManager
from service.store import Store
from tests.support.factories import ScriptedNarrator, fake_deps, intake

pytestmark = pytest.mark.anyio


def manager(path: Path, narrator: ScriptedNarrator | None = None) -> JobManager:
    deps = fake_deps(narrator=narrator or ScriptedNarrator())
    return JobManager(Store(path), deps, Limits(), heartbeat_s=0.1)


async def test_a_second_process_neither_kills_nor_misses_a_live_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    first = manager(path, ScriptedNarrator(chunks=20, delay_s=0.02))
    submitted = await first.submit(intake().case, kind="diagnose")
    await asyncio.sleep(0.1)
    second = manager(path)  # another replica opens the same store mid-run
    assert await second.recover() == []
    followed = [e async for e in second.follow(submitted.job_id) if e is not None]
    assert followed[-1].name == "completed"  # seen through the store, not in memory
    result = await submitted.result()
    assert result.completed and result.report is not None
    assert [e.seq for e in followed] == list(range(1, len(followed) + 1))


async def test_recover_ends_jobs_whose_process_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = Store(path)
    case = intake().case
    store.create_job(case.case_id, "diagnose", {}, (case.record(), case.data))
    store.set_status(case.case_id, "running")
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat(timespec="milliseconds")
    store._db.execute("UPDATE jobs SET heartbeat=?", (old,))
    restarted = manager(path)
    assert await restarted.recover() == [case.case_id]
    job = restarted.get(case.case_id)
    assert job is not None and job.status == "failed"
    last = restarted.store.events_after(case.case_id)[-1]
    assert last.name == "error" and last.data["code"] == "interrupted"
    events = [e async for e in restarted.follow(case.case_id) if e is not None]
    assert events[-1].name == "error"  # a re-attaching client gets a terminal event
    assert restarted.load_case(case.case_id) == case  # the photo is still there to re-run
