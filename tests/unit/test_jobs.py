"""JobManager: one submit, follow from any point, disconnect without cancel, prompt
cancellation, persisted cases (several processes on one store: test_jobs_shared_store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from service.errors import ServiceUnavailable
from service.intake.cases import Limits
from service.jobs import JobManager
from service.pipeline.case import Case
from service.pipeline.events import TERMINAL_EVENTS
from service.pipeline.narrators.base import NarrationRequest
from service.store import SqliteStore, StoredEvent
from service.worker import Worker
from tests.support.factories import ScriptedNarrator, fake_deps, intake

pytestmark = pytest.mark.anyio
MakeJobs = Callable[..., Awaitable[JobManager]]


@pytest.fixture
async def make_jobs(tmp_path: Path) -> AsyncIterator[MakeJobs]:
    """A JobManager over a fresh store with fake adapters; shut down after the test."""
    workers: list[Worker] = []

    async def make(
        narrator: ScriptedNarrator | None = None, fallback: ScriptedNarrator | None = None
    ) -> JobManager:
        deps = fake_deps(narrator=narrator or ScriptedNarrator(3, 0.05))
        if fallback is not None:
            deps = replace(deps, fallback_narrator=fallback)
        store = SqliteStore(tmp_path / "jobs.db")
        worker = Worker(store, deps, Limits(), concurrency=4, lease_s=3.0)
        await worker.start()
        workers.append(worker)
        return JobManager(store, deps, Limits(), worker=worker)

    yield make
    for worker in workers:
        await worker.stop(0)


def make_case(**fields: str) -> Case:
    return intake(None, **fields).case


async def test_follow_from_any_point(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs(ScriptedNarrator(5, 0.05))
    made = intake()
    submission = await jobs.submit(made.case, kind="diagnose", image=made.rgb)
    assert submission.job_id == made.case.case_id and submission.persisted
    result = await submission.result()
    assert result.completed and result.error is None
    events = await jobs.store.events_after(submission.job_id)
    assert events[0].name == "accepted" and events[-1].name == "completed"
    tail = [e async for e in jobs.follow(submission.job_id, after=4) if e is not None]
    assert [e.seq for e in tail] == [e.seq for e in events[4:]]
    pdf = await jobs.store.get_artifact(submission.job_id, "pdf")
    assert pdf is not None and result.pdf is not None and result.pdf["size"] == len(pdf[1])
    assert result.report is not None and result.report["case_id"] == made.case.case_id
    assert (await jobs.result(submission.job_id)) == result  # any later reader folds the same


async def test_the_case_is_stored_before_submit_returns(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs()
    case = make_case(patient_name="Jane Roe", history="itchy", language="ko")
    submission = await jobs.submit(case, kind="diagnose")  # no pixels: decoded from the bytes
    assert await jobs.load_case(submission.job_id) == case
    job = await jobs.get(submission.job_id)
    assert job is not None and job.kind == "diagnose" and job.meta["language"] == "ko"
    assert (await submission.result()).completed
    assert await jobs.load_case("absent") is None


async def test_a_follower_leaving_does_not_cancel(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs(ScriptedNarrator(6, 0.05))
    submission = await jobs.submit(make_case(), kind="diagnose")
    async for event in jobs.follow(submission.job_id):
        if event is not None and event.name == "report.delta":
            break  # the client disconnects mid-stream
    result = await submission.result()
    assert result.completed
    assert (await jobs.store.events_after(submission.job_id))[-1].name == "completed"


async def test_cancel_stops_generation_promptly(make_jobs: MakeJobs) -> None:
    narrator = ScriptedNarrator(1000, 0.05)
    jobs = await make_jobs(narrator)
    submission = await jobs.submit(make_case(), kind="diagnose")
    while narrator.produced < 2:
        await asyncio.sleep(0.01)
    cancelled = await jobs.cancel(submission.job_id)
    assert cancelled is not None
    await asyncio.wait_for(narrator.closed.wait(), 1.0)
    assert narrator.produced < 10
    result = await asyncio.wait_for(submission.result(), 5)  # the terminal event arrives
    record = await jobs.get(submission.job_id)
    assert record is not None and record.status == "cancelled"
    last = (await jobs.store.events_after(submission.job_id))[-1]
    assert last.name == "error" and last.data["code"] == "cancelled"
    assert not result.completed and result.error is not None
    assert result.error["code"] == "cancelled"
    again = await jobs.cancel(submission.job_id)  # already ended: nothing changes
    assert again is not None and again.status == "cancelled"


async def test_keepalive_while_waiting(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs(ScriptedNarrator(3, 0.05))
    submission = await jobs.submit(make_case(), kind="diagnose")
    seen_none = False
    async for event in jobs.follow(submission.job_id, keepalive_s=0.01):
        seen_none = seen_none or event is None
    assert seen_none


class BrokenNarrator(ScriptedNarrator):
    """Fails after two chunks, as a buggy backend would."""

    async def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        yield "first "
        yield "second "
        raise RuntimeError("backend exploded")


async def test_a_narrator_exception_falls_back_and_the_job_completes(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs(BrokenNarrator())
    submission = await jobs.submit(make_case(), kind="diagnose")
    result = await asyncio.wait_for(submission.result(), 5)
    events = await jobs.store.events_after(submission.job_id)
    names = [e.name for e in events]
    assert names[names.index("report.delta") :][:4] == [
        *("report.delta", "report.delta", "narrator.fallback", "report.reset"),
    ]
    assert result.completed and result.narrator_fallback is not None
    assert result.narrator_fallback["partial_discarded"] is True
    assert "exploded" not in result.narrator_fallback["reason"]  # internals do not leak
    assert result.report is not None and result.report["narrative"] == "chunk 0 chunk 1 chunk 2 "


async def test_a_failing_fallback_ends_the_stream_with_an_error_event(
    make_jobs: MakeJobs,
) -> None:
    jobs = await make_jobs(BrokenNarrator(), BrokenNarrator())
    submission = await jobs.submit(make_case(), kind="diagnose")
    result = await asyncio.wait_for(submission.result(), 5)
    events = await jobs.store.events_after(submission.job_id)
    assert [e.name for e in events][-3:] == ["report.delta", "report.delta", "error"]
    problem = events[-1].data
    assert problem["status"] == 500 and problem["stage"] == "narrate"
    assert "exploded" not in problem["detail"]  # internals do not leak to clients
    assert result.error == problem
    record = await jobs.get(submission.job_id)
    assert record is not None and record.status == "failed"


async def test_a_stored_case_that_no_longer_decodes_fails_cleanly(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs()
    case = make_case()
    case = replace(case, data=case.data[: len(case.data) // 2])  # a truncated JPEG
    result = await asyncio.wait_for((await jobs.submit(case, kind="diagnose")).result(), 5)
    assert result.error is not None and result.error["stage"] == "decode"
    assert 400 <= result.error["status"] < 500
    record = await jobs.get(case.case_id)
    assert record is not None and record.status == "failed"


async def test_classify_and_analyze_answer_inline_and_store_nothing(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs()
    for mode in ("classify", "analyze"):
        made = intake()
        submission = await jobs.submit(made.case, kind=mode, mode=mode, explain=True)
        result = await submission.result()
        assert not submission.persisted and result.completed
        assert result.classification is not None
        assert (result.summary is not None) == (mode == "analyze")
        assert result.report is None and result.pdf is None
        assert await jobs.get(made.case.case_id) is None
        assert ("heatmap" in result.artifacts) == (mode == "classify")  # explain=True


async def test_a_full_narrator_refuses_before_anything_is_stored(make_jobs: MakeJobs) -> None:
    jobs = await make_jobs(ScriptedNarrator(full=True))
    case = make_case()
    with pytest.raises(ServiceUnavailable):
        await jobs.submit(case, kind="diagnose")
    assert await jobs.get(case.case_id) is None and await jobs.store.get_case(case.case_id) is None


class EndLandsBetweenReads(SqliteStore):
    """A store whose first two event reads of a job miss its end: the follower has read every
    event but the last, and the end is stored between its next (empty) read and its check of
    the job's status — the race a blocking request once lost as "no terminal event"."""

    reads = 0

    async def events_after(self, job_id: str, after: int = 0) -> list[StoredEvent]:
        events = await super().events_after(job_id, after)
        self.reads += 1
        return events if self.reads > 2 else [e for e in events if e.name not in TERMINAL_EVENTS]


async def test_an_end_stored_between_the_event_read_and_the_status_check_is_not_lost(
    make_jobs: MakeJobs, tmp_path: Path
) -> None:
    jobs = await make_jobs()
    made = intake()
    submission = await jobs.submit(made.case, kind="diagnose", image=made.rgb)
    assert (await submission.result()).completed
    racing = JobManager(EndLandsBetweenReads(tmp_path / "jobs.db"), jobs.deps, Limits())
    result = await racing.result(submission.job_id)
    assert result.completed and result.links and result.pdf is not None
