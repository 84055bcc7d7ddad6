"""`Worker`: claims cases from the job store and runs them, holding a lease on each.

A worker runs inside `skinscreen serve` (unless `--no-worker`) or alone (`skinscreen worker`).
It claims up to `concurrency` cases, renews their leases every third of `lease_s`, and writes
events and artifacts through the lease's fence. A case whose worker died is claimed again when
its lease expires and re-run from the start (attempt + 1, a `retrying` event); artifacts are
keyed by case, so the outputs are written once. A cancel requested on any replica reaches the
worker within a poll interval. `stop(grace)` stops claiming, lets running cases finish within
the grace period, and gives the leases of the rest back so another worker takes them over.
A storage fault (disk full, read-only, database down) ends the case with an `error` event;
when even that cannot be written, the problem is kept in memory (`unwritten_end`) so this
process's followers — a blocking request — are answered, and the case is re-run once its
lease expires and the store takes writes again. The loops survive faults and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from PIL import Image

from service import metrics
from service.errors import StorageFault
from service.images import off_loop
from service.intake.cases import Limits, decode_case
from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.case import Case, MemorySink
from service.pipeline.ports import PipelineDeps
from service.pipeline.run import error_problem, run_case
from service.store import CANCELLED, Claim, Fence, JobStore

log = get_logger(__name__)
Why = Literal["cancel", "release", "lost"]


class LeaseLost(Exception):
    """Another worker holds this case now: stop without writing anything more."""


def new_worker_id() -> str:
    """`host:pid:random` — the host and pid let a restarted process spot its dead predecessor."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _dead_on_this_host(worker: str) -> bool:
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Worker:
    """Runs claimed cases; see the module docstring."""

    def __init__(
        self,
        store: JobStore,
        deps: PipelineDeps,
        limits: Limits,
        *,
        concurrency: int = 4,
        lease_s: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self.id = new_worker_id()
        self.store, self.deps, self.limits = store, deps, limits
        self.concurrency, self.lease_s, self.max_attempts = concurrency, lease_s, max_attempts
        self.hints: dict[str, tuple[float, Image.Image]] = {}  # pixels from this process's intake
        self._running: dict[str, asyncio.Task[None]] = {}
        self._fences: dict[str, Fence] = {}
        self._why: dict[str, Why] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._pruned_at = float("-inf")
        #: job id → (monotonic time, attempt, problem) of ends the store could not take.
        self._unwritten: dict[str, tuple[float, int, dict[str, Any]]] = {}

    def hint(self, job_id: str, image: Image.Image) -> None:
        """Pixels already decoded for a case this process submitted (saves a decode)."""
        now = asyncio.get_running_loop().time()
        for stale in [k for k, (t, _) in self.hints.items() if now - t > 120]:
            self.hints.pop(stale, None)
        self.hints[job_id] = (now, image)

    async def start(self) -> None:
        """Take over the leases of dead workers on this host, then start claiming."""
        dead = [w for w in await self.store.running_workers() if _dead_on_this_host(w)]
        if dead and (count := await self.store.expire_leases_of(dead)):
            log.warning("worker.took_over_dead_leases", cases=count)
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="worker-claims"),
            asyncio.create_task(self._renew_loop(), name="worker-leases"),
        ]
        log.info("worker.started", concurrency=self.concurrency, backend=self.store.backend)

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if await self._claim_once():
                    continue
                await self.store.wait_for_work(0.5)
            except Exception as exc:  # the store failed (disk full, database down): retry
                log.warning("worker.claim_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _claim_once(self) -> bool:
        for job_id in await self.store.cancel_requested(self.id):
            self.cancel_local(job_id, "cancel")
        if len(self._running) < self.concurrency:
            claim = await self.store.claim(self.id, self.lease_s, self.max_attempts)
            if claim is not None:
                self._launch(claim)
                return True
        return False

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            for job_id, fence in list(self._fences.items()):
                try:
                    state = await self.store.renew(fence, self.lease_s)
                except Exception as exc:  # a later renewal may still succeed
                    log.warning("worker.renew_failed", case_id=job_id, error=type(exc).__name__)
                    continue
                if state != "held":
                    self.cancel_local(job_id, "cancel" if state == "cancel" else "lost")

    def _launch(self, claim: Claim) -> None:
        job_id = claim.job.id
        self._unwritten.pop(job_id, None)
        self._fences[job_id] = claim.fence
        task = asyncio.create_task(self._execute(claim), name=f"case-{job_id}")
        self._running[job_id] = task
        task.add_done_callback(lambda _: self._forget(job_id))

    def _forget(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._fences.pop(job_id, None)
        self._why.pop(job_id, None)
        self.hints.pop(job_id, None)

    def cancel_local(self, job_id: str, why: Why) -> bool:
        """Stop a case this worker runs (`cancel`: end it cancelled; `release`: give it back;
        `lost`: another worker has it). False when it does not run here."""
        task = self._running.get(job_id)
        if task is None or task.done():
            return False
        self._why.setdefault(job_id, why)
        task.cancel()
        return True

    def running(self, job_id: str) -> bool:
        """True while this worker runs the case."""
        return job_id in self._running

    def unwritten_end(self, job_id: str) -> tuple[int, dict[str, Any]] | None:
        """(attempt, problem) of this case's end when the store could not take it, else None."""
        entry = self._unwritten.get(job_id)
        return None if entry is None else (entry[1], entry[2])

    def _keep_unwritten(self, fence: Fence, problem: dict[str, Any]) -> None:
        now = asyncio.get_running_loop().time()
        for stale in [k for k, (t, _, _) in self._unwritten.items() if now - t > 600]:
            self._unwritten.pop(stale, None)
        self._unwritten[fence.job_id] = (now, fence.attempt, problem)

    async def _execute(self, claim: Claim) -> None:
        job, fence = claim.job, claim.fence
        created = dt.datetime.fromisoformat(job.created)
        metrics.observe_queue_wait((dt.datetime.now(dt.UTC) - created).total_seconds())
        try:
            if job.attempt > 1 or await self.store.events_after(job.id, 0):
                metrics.job_retried()  # re-run from the start: after a crash or a release
                if claim.expired:
                    metrics.lease_expired()
                retry = {"attempt": job.attempt, "max_attempts": self.max_attempts}
                await self._append(fence, ev.RETRYING, retry)
            status = await self._run(Case.from_record(claim.record, claim.data), fence)
            metrics.job_finished(job.kind, status)
            await self._prune()
        except asyncio.CancelledError:
            why = self._why.get(job.id, "release")
            try:
                if why == "cancel":
                    await self._end(fence, "cancelled", ev.ERROR, dict(CANCELLED))
                    metrics.job_finished(job.kind, "cancelled")
                elif why == "release":
                    await self.store.release(fence)
            except (StorageFault, LeaseLost) as exc:
                log.warning("worker.stop_not_written", case_id=job.id, error=type(exc).__name__)
            log.info("worker.case_stopped", case_id=job.id, why=why)
        except LeaseLost:
            log.warning("worker.lease_lost", case_id=job.id)
        except StorageFault as fault:
            await self._storage_fault(fence, job.kind, fault)

    async def _storage_fault(self, fence: Fence, kind: str, fault: StorageFault) -> None:
        """End the case with the fault's problem; keep it in memory when that cannot be written."""
        problem = {**fault.problem(), "stage": "store"}
        written = False
        try:
            written = await self.store.end(fence, "failed", ev.ERROR, problem) is not None
        except StorageFault:
            self._keep_unwritten(fence, problem)
        metrics.job_finished(kind, "failed")
        log.error("worker.storage_fault", case_id=fence.job_id, code=fault.code, written=written)

    async def _prune(self) -> None:
        """Retention: drop finished jobs past the age or count limit, at most once a minute."""
        now = asyncio.get_running_loop().time()
        if now - self._pruned_at >= 60:
            self._pruned_at = now
            try:
                removed = await self.store.prune()
            except StorageFault as fault:
                log.warning("store.prune_failed", code=fault.code)
                return
            if removed:
                log.info("store.pruned", jobs=removed)

    async def _run(self, case: Case, fence: Fence) -> str:
        """Run the case, persisting each event after the artifacts it announces."""
        hinted, limits, store = self.hints.pop(case.case_id, None), self.limits, self.store
        try:
            with metrics.timed_stage("decode"):
                image = (
                    hinted[1] if hinted else await off_loop(limits.image, decode_case, case, limits)
                )
        except Exception as exc:
            await self._end(fence, "failed", ev.ERROR, error_problem(exc, "decode"))
            return "failed"
        sink = MemorySink()
        async for event in run_case(self.deps, case, image, sink):
            for kind, (media_type, content) in list(sink.items.items()):
                if not await store.put_artifact(case.case_id, kind, media_type, content, fence):
                    raise LeaseLost
            sink.items.clear()
            if event.terminal:
                status = "completed" if event.name == ev.COMPLETED else "failed"
                await self._end(fence, status, event.name, event.data)
                return status
            if event.name == ev.NARRATOR_FALLBACK:
                metrics.fallback(str(event.data.get("from")), str(event.data.get("to")))
            await self._append(fence, event.name, event.data)
        await self._end(fence, "failed", ev.ERROR, error_problem(RuntimeError(), "run"))
        return "failed"

    async def _append(self, fence: Fence, name: str, data: Mapping[str, Any]) -> None:
        if await self.store.append_event(fence.job_id, name, dict(data), fence) is None:
            raise LeaseLost

    async def _end(self, fence: Fence, status: str, name: str, data: Mapping[str, Any]) -> None:
        if await self.store.end(fence, status, name, dict(data)) is None:
            raise LeaseLost

    async def stop(self, grace_s: float) -> None:
        """Stop claiming; let running cases finish within `grace_s`, release the rest."""
        self._stopping.set()
        pending = list(self._running.values())
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        for job_id in list(self._running):
            self.cancel_local(job_id, "release")
        remaining = list(self._running.values())
        if remaining:
            await asyncio.wait(remaining, timeout=10)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        log.info("worker.stopped", released=len(remaining))
