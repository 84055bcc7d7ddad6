"""Jobs: pipeline runs that outlive the request that started them.

Each run is an asyncio task whose events are appended to the Store as they happen. Any number
of clients follow a job (SSE, blocking REST, FHIR polling); a client that disconnects does not
cancel the job — only `cancel()` (DELETE) does, and it stops generation promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from service.errors import NotFound
from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.case import CaseInput, Mode
from service.pipeline.run import PipelineDeps, run_case
from service.store import JobRecord, Store, StoredEvent

log = get_logger(__name__)


class StoreSink:
    """ArtifactSink writing into the Store under the job's id."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id = store, job_id

    def put(self, kind: str, media_type: str, content: bytes) -> None:
        self.store.put_artifact(self.job_id, kind, media_type, content)


class JobManager:
    """Starts, follows and cancels runs."""

    def __init__(self, store: Store, deps: PipelineDeps, max_concurrent: int = 16) -> None:
        self.store = store
        self.deps = deps
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Condition] = {}

    def start(
        self,
        case: CaseInput,
        *,
        kind: str = "diagnose",
        mode: Mode = "diagnose",
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Register the job and start its run in the background; returns the job id."""
        job_meta = {"mode": mode, "language": case.language, **(meta or {})}
        self.store.create_job(case.case_id, kind, job_meta)
        self._changed[case.case_id] = asyncio.Condition()
        task = asyncio.create_task(self._run(case, mode), name=f"job-{case.case_id}")
        self._tasks[case.case_id] = task
        task.add_done_callback(self._forget)
        return case.case_id

    def _forget(self, task: asyncio.Task[None]) -> None:
        """Drop a finished task (its name carries the job id)."""
        self._tasks.pop(task.get_name().removeprefix("job-"), None)

    async def _run(self, case: CaseInput, mode: Mode) -> None:
        job_id = case.case_id
        try:
            async with self._slots:
                self.store.set_status(job_id, "running")
                status = "failed"
                async for event in run_case(self.deps, case, StoreSink(self.store, job_id), mode):
                    await self._append(job_id, event.name, event.data)
                    if event.name == ev.COMPLETED:
                        status = "completed"
                self.store.set_status(job_id, status)
        except asyncio.CancelledError:
            self.store.set_status(job_id, "cancelled")
            await self._append(
                job_id,
                ev.ERROR,
                {
                    "type": "https://skinscreen.dev/problems/cancelled",
                    "title": "The job was cancelled",
                    "status": 409,
                    "detail": "the job was cancelled at the client's request",
                    "code": "cancelled",
                },
            )
            raise
        finally:
            await self._notify(job_id)
            self.store.prune()

    async def _append(self, job_id: str, name: str, data: dict[str, Any]) -> None:
        self.store.append_event(job_id, name, data)
        await self._notify(job_id)

    async def _notify(self, job_id: str) -> None:
        condition = self._changed.get(job_id)
        if condition is not None:
            async with condition:
                condition.notify_all()

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
        """
        condition = self._changed.get(job_id)
        while True:
            batch = self.store.events_after(job_id, after)
            for event in batch:
                after = event.seq
                yield event
                if event.name in ev.TERMINAL_EVENTS:
                    return
            if not self.running(job_id) or condition is None:
                # finished (or from an earlier process): one last read, then stop
                for event in self.store.events_after(job_id, after):
                    yield event
                return
            async with condition:
                if self.store.events_after(job_id, after):
                    continue
                try:
                    await asyncio.wait_for(condition.wait(), keepalive_s)
                except TimeoutError:
                    yield None

    async def wait(self, job_id: str) -> list[StoredEvent]:
        """All events of the job once it has ended."""
        return [e async for e in self.follow(job_id) if e is not None]

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
