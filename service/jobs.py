"""Jobs: the one submit every door uses, and following, awaiting and cancelling runs.

`submit(case, kind=..., mode=...)` checks capacity, persists and hands over, for every door:
- `diagnose` runs are jobs: admission control first (a full narrator queue or more than
  `max_queued` cases queued or running → 503 + Retry-After, never an unbounded wait), then the
  case (record + original bytes) is written to the store with the job *before* `submit`
  returns. A worker — in this process or any other sharing the store — claims and runs it
  (`service.worker`). Any number of clients on any replica follow a job; a client that
  disconnects does not cancel it — only `cancel()` (DELETE) does, from any replica.
- `classify` and `analyze` runs answer in the same response and produce nothing to fetch
  later, so they run inline and are not persisted: their `RunResult` carries their artifacts.
Blocking doors await `Submission.result()`, a typed `RunResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from service import metrics
from service.errors import NotFound, ServiceUnavailable, TooManyRequests
from service.images import off_loop
from service.intake.cases import Limits, decode_case
from service.pipeline import events as ev
from service.pipeline.case import Case, MemorySink, Mode
from service.pipeline.ports import PipelineDeps
from service.pipeline.result import RunResult
from service.pipeline.run import run_case
from service.security.guard import ANONYMOUS
from service.store import JobRecord, JobStore, StoredEvent
from service.worker import Worker


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
    """Submits, follows and cancels runs (the API side; `Worker` is the running side)."""

    def __init__(
        self,
        store: JobStore,
        deps: PipelineDeps,
        limits: Limits,
        *,
        max_queued: int = 200,
        max_queued_per_client: int = 200,
        worker: Worker | None = None,
    ) -> None:
        self.store = store
        self.deps = deps
        self.limits = limits
        self.max_queued = max_queued
        self.max_queued_per_client = max_queued_per_client
        self.worker = worker

    async def submit(
        self,
        case: Case,
        *,
        kind: str,
        mode: Mode = "diagnose",
        image: Image.Image | None = None,
        explain: bool = False,
        meta: dict[str, Any] | None = None,
        client: str = ANONYMOUS,
    ) -> Submission:
        """Capacity, persistence and hand-over of one case (see the module docstring).

        `image`: pixels the intake already decoded (else `case.data` is decoded again).
        `client`: who submits (the owner once authentication lands; one bound per client).
        """
        if mode != "diagnose":
            inline = asyncio.create_task(self._run_inline(case, mode, image, explain))
            return Submission(case.case_id, False, lambda: asyncio.shield(inline))
        self.deps.narrator.ensure_capacity()
        if await self.store.count_active() >= self.max_queued:
            metrics.admission_rejected("queue_full")
            raise ServiceUnavailable(
                f"{self.max_queued} cases are already queued or running; retry later",
                retry_after=10,
            )
        if await self.store.count_active(client) >= self.max_queued_per_client:
            metrics.admission_rejected("client_limit")
            raise TooManyRequests(
                f"this client already has {self.max_queued_per_client} cases queued or running",
                retry_after=10,
            )
        job_meta = {"mode": mode, "language": case.language, "client": client, **(meta or {})}
        if self.worker is not None and image is not None:
            self.worker.hint(case.case_id, image)
        await self.store.create_job(case.case_id, kind, job_meta, (case.record(), case.data))
        metrics.job_submitted(kind)
        return Submission(case.case_id, True, lambda: self.result(case.case_id))

    async def _run_inline(
        self, case: Case, mode: Mode, image: Image.Image | None, explain: bool
    ) -> RunResult:
        sink = MemorySink()
        pixels = (
            image
            if image is not None
            else await off_loop(self.limits.image, decode_case, case, self.limits)
        )
        events = [e async for e in run_case(self.deps, case, pixels, sink, mode, explain=explain)]
        return RunResult.fold(case.case_id, events, sink.items)

    async def load_case(self, job_id: str) -> Case | None:
        """The stored case of a job, rebuilt (None when the job has none)."""
        stored = await self.store.get_case(job_id)
        return None if stored is None else Case.from_record(*stored)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record."""
        return await self.store.get_job(job_id)

    async def require(self, job_id: str, kind: str | None = None) -> JobRecord:
        """The job's record, or a 404 (also when it is not of `kind`)."""
        job = await self.store.get_job(job_id)
        if job is None or (kind is not None and job.kind != kind):
            what = "job" if kind is None else f"{kind} job"
            raise NotFound(f"no {what} {job_id[:64]}")
        return job

    async def follow(
        self, job_id: str, after: int = 0, keepalive_s: float | None = None
    ) -> AsyncIterator[StoredEvent | None]:
        """Stored events with seq > after, then live ones until the job's terminal event.

        Events recorded after the terminal one (a clinician's `report.reviewed`) are replayed
        with it; a follower that reconnects after the end gets what is left and returns.
        Yields None when `keepalive_s` passes with no event (the SSE door sends a comment).
        Works on any replica: new events wake followers through the store.
        """
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while True:
            batch = await self.store.events_after(job_id, after)
            ended = False
            for event in batch:
                after = event.seq
                yield event
                ended = ended or event.name in ev.TERMINAL_EVENTS
            if ended:
                return
            if (unwritten := await self._unwritten_end(job_id)) is not None:
                yield StoredEvent(after + 1, ev.ERROR, unwritten)
                return
            if batch:
                quiet_since = loop.time()
            elif (job := await self.store.get_job(job_id)) is None or job.finished:
                # The end may have been stored between the read above and this check.
                for event in await self.store.events_after(job_id, after):
                    yield event
                return
            elif keepalive_s is not None and loop.time() - quiet_since >= keepalive_s:
                quiet_since = loop.time()
                yield None
            wait = keepalive_s if keepalive_s is not None else 5.0
            await self.store.wait_for_events(job_id, after, wait)

    async def _unwritten_end(self, job_id: str) -> dict[str, Any] | None:
        """The problem this process's worker could not store as the job's end (a full disk),
        while the job still stands at that attempt — so a blocking request is answered."""
        ended = self.worker.unwritten_end(job_id) if self.worker is not None else None
        if ended is None:
            return None
        job = await self.store.get_job(job_id)
        return ended[1] if job is not None and job.attempt == ended[0] else None

    async def result(self, job_id: str) -> RunResult:
        """The job's result once it has ended."""
        events = [e async for e in self.follow(job_id) if e is not None]
        return RunResult.fold(job_id, events)

    async def cancel(self, job_id: str, wait_s: float = 5.0) -> JobRecord | None:
        """Cancel a job from any replica: a queued one ends now, a running one within a poll
        interval (at once when this process's worker runs it); waits up to `wait_s` for its
        terminal event. None when unknown."""
        job = await self.store.request_cancel(job_id)
        if job is None:
            return None
        if self.worker is not None:
            self.worker.cancel_local(job_id, "cancel")
        if not job.finished:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    async for _ in self.follow(job_id, keepalive_s=wait_s):
                        pass
        return await self.store.get_job(job_id)
