"""Jobs: the one submit every door uses, and runs that outlive the request that started them.

`submit(case, kind=..., mode=...)` checks capacity, persists and starts, for every door:
- `diagnose` runs are jobs: the case (record + original bytes) is written to the Store with the
  job before `submit` returns, and the run's events are appended as they happen. Any number of
  clients follow a job (SSE, blocking REST, FHIR polling); a client that disconnects does not
  cancel it — only `cancel()` (DELETE) does, and it stops generation promptly.
- `classify` and `analyze` runs answer in the same response and produce nothing to fetch
  later, so they are not persisted: their `RunResult` carries their artifacts.
Blocking doors await `Submission.result()`, a typed `RunResult`.

Each process refreshes the heartbeat of the jobs it runs; `recover()` (at start-up) ends only
jobs whose heartbeat went stale — their process is gone — so processes can share a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from service.errors import NotFound
from service.intake.cases import Limits, decode_case
from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.case import Case, MemorySink, Mode
from service.pipeline.ports import PipelineDeps
from service.pipeline.result import RunResult
from service.pipeline.run import error_problem, run_case
from service.store import JobRecord, Store, StoredEvent

log = get_logger(__name__)
CANCELLED = {
    "type": "https://skinscreen.dev/problems/cancelled",
    "title": "The job was cancelled",
    "status": 409,
    "detail": "the job was cancelled at the client's request",
    "code": "cancelled",
}
INTERRUPTED = {
    "type": "https://skinscreen.dev/problems/interrupted",
    "title": "The job was interrupted",
    "status": 503,
    "detail": "the process running this job stopped before it finished; submit the case again",
    "code": "interrupted",
}


class StoreSink:
    """ArtifactSink writing into the Store under the job's id."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id = store, job_id

    def put(self, kind: str, media_type: str, content: bytes) -> None:
        self.store.put_artifact(self.job_id, kind, media_type, content)


@dataclass(frozen=True)
class Submission:
    """A submitted case: its id, whether it is a stored job, and a way to await its result."""

    job_id: str
    persisted: bool
    _result: Callable[[], Awaitable[RunResult]]

    async def result(self) -> RunResult:
        """The run's result once it has ended."""
        return await self._result()


class JobManager:
    """Submits, follows and cancels runs."""

    def __init__(
        self,
        store: Store,
        deps: PipelineDeps,
        limits: Limits,
        max_concurrent: int = 16,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.store = store
        self.deps = deps
        self.limits = limits
        self.heartbeat_s = heartbeat_s
        self.stale_after = dt.timedelta(seconds=heartbeat_s * 6)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Condition] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    async def submit(
        self,
        case: Case,
        *,
        kind: str,
        mode: Mode = "diagnose",
        image: Image.Image | None = None,
        explain: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> Submission:
        """Capacity, persistence and start of one case (see the module docstring).

        `image`: pixels the intake already decoded (else `case.data` is decoded again).
        """
        if mode != "diagnose":
            inline = asyncio.create_task(self._run_inline(case, mode, image, explain))
            return Submission(case.case_id, False, lambda: asyncio.shield(inline))
        self.deps.narrator.ensure_capacity()
        job_meta = {"mode": mode, "language": case.language, **(meta or {})}
        self.store.create_job(case.case_id, kind, job_meta, (case.record(), case.data))
        self._changed[case.case_id] = asyncio.Condition()
        task = asyncio.create_task(self._run(case, image), name=f"job-{case.case_id}")
        self._tasks[case.case_id] = task
        task.add_done_callback(self._forget)
        self._ensure_heartbeat()
        return Submission(case.case_id, True, lambda: self.result(case.case_id))

    async def _run_inline(
        self, case: Case, mode: Mode, image: Image.Image | None, explain: bool
    ) -> RunResult:
        sink = MemorySink()
        pixels = (
            image if image is not None else await asyncio.to_thread(decode_case, case, self.limits)
        )
        events = [e async for e in run_case(self.deps, case, pixels, sink, mode, explain=explain)]
        return RunResult.fold(case.case_id, events, sink.items)

    def _forget(self, task: asyncio.Task[None]) -> None:
        """Drop a finished task (its name carries the job id)."""
        self._tasks.pop(task.get_name().removeprefix("job-"), None)

    async def _run(self, case: Case, image: Image.Image | None) -> None:
        job_id = case.case_id
        try:
            async with self._slots:
                self.store.set_status(job_id, "running")
                status = "failed"
                async for event in self._events(case, image):
                    await self._append(job_id, event.name, dict(event.data))
                    if event.name == ev.COMPLETED:
                        status = "completed"
                self.store.set_status(job_id, status)
        except asyncio.CancelledError:
            self.store.set_status(job_id, "cancelled")
            await self._append(job_id, ev.ERROR, dict(CANCELLED))
            raise
        finally:
            await self._notify(job_id)
            self.store.prune()

    async def _events(self, case: Case, image: Image.Image | None) -> AsyncIterator[ev.Event]:
        """The run's events; pixels that can no longer be decoded end it with an error."""
        if image is None:
            try:
                image = await asyncio.to_thread(decode_case, case, self.limits)
            except Exception as exc:
                yield ev.Event(ev.ERROR, error_problem(exc, "decode"))
                return
        async for event in run_case(self.deps, case, image, StoreSink(self.store, case.case_id)):
            yield event

    def load_case(self, job_id: str) -> Case | None:
        """The stored case of a job, rebuilt (None when the job has none)."""
        stored = self.store.get_case(job_id)
        return None if stored is None else Case.from_record(*stored)

    async def _append(self, job_id: str, name: str, data: dict[str, Any]) -> None:
        self.store.append_event(job_id, name, data)
        await self._notify(job_id)

    async def _notify(self, job_id: str) -> None:
        condition = self._changed.get(job_id)
        if condition is not None:
            async with condition:
                condition.notify_all()

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat(), name="jobs-heartbeat")

    async def _beat(self) -> None:
        while self._tasks:
            self.store.heartbeat(list(self._tasks))
            await asyncio.sleep(self.heartbeat_s)

    async def recover(self) -> list[str]:
        """End the jobs whose process is gone (stale heartbeat) with an `interrupted` error."""
        stale = [j for j in self.store.stale_jobs(self.stale_after) if j not in self._tasks]
        for job_id in stale:
            self.store.append_event(job_id, ev.ERROR, dict(INTERRUPTED))
            self.store.set_status(job_id, "failed")
        if stale:
            log.warning("jobs_interrupted", count=len(stale))
        return stale

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record."""
        return self.store.get_job(job_id)

    def require(self, job_id: str, kind: str | None = None) -> JobRecord:
        """The job's record, or a 404 (also when it is not of `kind`)."""
        job = self.store.get_job(job_id)
        if job is None or (kind is not None and job.kind != kind):
            what = "job" if kind is None else f"{kind} job"
            raise NotFound(f"no {what} {job_id[:64]}")
        return job

    def running(self, job_id: str) -> bool:
        """True while the job's task is alive in this process."""
        return job_id in self._tasks

    async def follow(
        self, job_id: str, after: int = 0, keepalive_s: float | None = None
    ) -> AsyncIterator[StoredEvent | None]:
        """Stored events with seq > after, then live ones until the job ends.

        Yields None when `keepalive_s` passes with no event (the SSE door sends a comment).
        A job run by another process sharing the store is polled while its heartbeat is fresh.
        """
        idle = 0.0
        while True:
            for event in self.store.events_after(job_id, after):
                after, idle = event.seq, 0.0
                yield event
                if event.name in ev.TERMINAL_EVENTS:
                    return
            condition = self._changed.get(job_id)
            if self.running(job_id) and condition is not None:
                async with condition:
                    if self.store.events_after(job_id, after):
                        continue
                    try:
                        await asyncio.wait_for(condition.wait(), keepalive_s)
                    except TimeoutError:
                        yield None
            elif self.store.is_alive(job_id, self.stale_after):
                await asyncio.sleep(0.25)
                idle += 0.25
                if keepalive_s is not None and idle >= keepalive_s:
                    idle = 0.0
                    yield None
            else:
                for event in self.store.events_after(job_id, after):  # one last read
                    yield event
                return

    async def result(self, job_id: str) -> RunResult:
        """The job's result once it has ended."""
        events = [e async for e in self.follow(job_id) if e is not None]
        return RunResult.fold(job_id, events)

    async def cancel(self, job_id: str) -> bool:
        """Cancel a running job; False when it is not running here."""
        task = self._tasks.get(job_id)
        if task is None:
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def shutdown(self) -> None:
        """Cancel every running job (process exit)."""
        for job_id in list(self._tasks):
            await self.cancel(job_id)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
