"""Scale-out on a real PostgreSQL: 2 API replicas (`serve --no-worker`) + 2 workers, as
processes on loopback, with a slow OpenAI-compatible LLM so cases can be killed mid-run.

Cases are submitted through replica A and followed through replica B; workers are `kill -9`'d
mid-narration and mid-PDF; both API replicas are restarted while cases run; a cancel through B
stops a case run by a worker. Every case must complete exactly once, with one PDF.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.sse_client import SseEvent, iter_sse
from tests.support.live_server import (
    LiveServer,
    WorkerProcess,
    free_port,
    start_server,
    start_worker,
    stop_server,
)
from tests.support.postgres import PostgresServer
from tests.support.postgres_fixture import postgres  # noqa: F401
from tests.support.slow_llm import SlowLlm

CASES = 30


class Topology:
    """The processes of one deployment and how to reach them."""

    def __init__(self, tmp: Path, dsn: str, llm_url: str) -> None:
        self.tmp, self.dsn = tmp, dsn
        self.env = {
            "SKINSCREEN_DATABASE_URL": dsn,
            "SKINSCREEN_NARRATOR": "openai",
            "SKINSCREEN_OPENAI_BASE_URL": llm_url,
            "SKINSCREEN_OPENAI_RETRIES": "0",
            "SKINSCREEN_OPENAI_SEND_IMAGE": "false",
            "SKINSCREEN_JOB_LEASE_S": "3",
            "SKINSCREEN_REPORT_HEATMAP": "false",
            "SKINSCREEN_SHUTDOWN_GRACE_S": "2",
        }
        self.ports = {"a": free_port(), "b": free_port()}
        self.api: dict[str, LiveServer] = {}
        self.workers: list[WorkerProcess] = []

    def start_api(self, name: str) -> LiveServer:
        server = start_server(
            self.tmp, self.env, args=("--no-worker",), port=self.ports[name], name=f"api-{name}"
        )
        self.api[name] = server
        return server

    def add_worker(self) -> WorkerProcess:
        worker = start_worker(self.tmp, self.env, name=f"worker-{len(self.workers)}")
        self.workers.append(worker)
        return worker

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def worker_pid_of(self, job_id: str) -> int | None:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SELECT worker FROM jobs WHERE id=%s", (job_id,)).fetchone()
        return int(row[0].split(":")[1]) if row and row[0] else None

    def stop(self) -> None:
        for server in self.api.values():
            stop_server(server)
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait(timeout=10)


@pytest.fixture
def topology(
    postgres: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Topology]:
    with SlowLlm(chunks=12, delay_s=0.15) as llm:
        dsn = postgres.create_database(f"scale{uuid.uuid4().hex[:10]}")
        made = Topology(tmp_path, dsn, llm.url)
        try:
            made.start_api("a")
            made.start_api("b")
            made.add_worker()
            made.add_worker()
            yield made
        finally:
            made.stop()


def submit(url: str, photo: bytes) -> str:
    """Start a streamed diagnose and hang up after the headers (that cancels nothing)."""
    with httpx.stream(
        "POST",
        f"{url}/api/v1/diagnose-stream",
        files={"image": ("p.jpg", photo, "image/jpeg")},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        return str(response.headers["x-job-id"])


def follow(topology: Topology, replica: str, job_id: str, seen: dict[str, list[str]]) -> None:
    """Follow a job through `replica` to its end, re-attaching with Last-Event-ID when the
    replica goes away (a rolling restart)."""
    last, names = 0, seen.setdefault(job_id, [])
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        try:
            with httpx.stream(
                "GET",
                f"{topology.url(replica)}/api/v1/jobs/{job_id}/events",
                headers={"Last-Event-ID": str(last)},
                timeout=httpx.Timeout(30, read=40),
            ) as response:
                for item in iter_sse(response):
                    if isinstance(item, SseEvent):
                        last = item.id
                        names.append(item.name)
                        if item.name in ("completed", "error"):
                            return
        except httpx.HTTPError:
            time.sleep(0.3)  # the replica is restarting: re-attach
    names.append("TIMEOUT")


def wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def job_whose_last_event_is(seen: dict[str, list[str]], name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id, names in list(seen.items()):
            if names and names[-1] == name:
                return job_id
        time.sleep(0.02)
    raise AssertionError(f"no case reached {name} in time")


def test_no_case_is_lost_to_worker_kills_or_rolling_restarts(
    topology: Topology, skin_jpeg: bytes
) -> None:
    job_ids = [submit(topology.url("a"), skin_jpeg) for _ in range(CASES)]
    seen: dict[str, list[str]] = {}
    threads = [
        threading.Thread(target=follow, args=(topology, "b", job_id, seen), daemon=True)
        for job_id in job_ids
    ]
    for thread in threads:
        thread.start()
    # kill -9 a worker in the middle of a narration …
    narrating = job_whose_last_event_is(seen, "report.delta")
    victim = topology.worker_pid_of(narrating)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    topology.add_worker()
    # … and another right after a report was composed, while its PDF is being rendered
    rendering = job_whose_last_event_is(seen, "report.completed")
    second = topology.worker_pid_of(rendering)
    if second is not None:
        os.kill(second, signal.SIGKILL)
        topology.add_worker()
    # a rolling restart of both API replicas while cases run
    for name in ("a", "b"):
        stop_server(topology.api[name])
        topology.start_api(name)
    for thread in threads:
        thread.join(timeout=180)
    assert all(not thread.is_alive() for thread in threads)
    lost = [j for j in job_ids if not seen.get(j) or seen[j][-1] != "completed"]
    assert lost == [], {j: seen.get(j, [])[-5:] for j in lost}
    with psycopg.connect(topology.dsn) as conn:
        rows = conn.execute(
            "SELECT j.id, j.status, j.attempt, "
            "(SELECT COUNT(*) FROM events e WHERE e.job_id=j.id AND e.name='completed'), "
            "(SELECT COUNT(*) FROM artifacts a WHERE a.job_id=j.id AND a.kind='pdf') "
            "FROM jobs j"
        ).fetchall()
    assert len(rows) == CASES
    assert all(
        status == "completed" and done == 1 and pdfs == 1 for _, status, _, done, pdfs in rows
    )
    assert sum(1 for row in rows if row[2] > 1) >= 1  # the killed workers' cases were re-run
    pdf = httpx.get(f"{topology.url('b')}/api/v1/reports/{job_ids[0]}.pdf", timeout=10)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_cancel_through_b_stops_a_case_a_worker_runs(topology: Topology, skin_jpeg: bytes) -> None:
    job_id = submit(topology.url("a"), skin_jpeg)
    seen: dict[str, list[str]] = {}
    follower = threading.Thread(target=follow, args=(topology, "a", job_id, seen), daemon=True)
    follower.start()
    wait_for(lambda: "report.delta" in seen.get(job_id, []))
    started = time.monotonic()
    response = httpx.delete(f"{topology.url('b')}/api/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200
    follower.join(timeout=20)
    assert seen[job_id][-1] == "error" and time.monotonic() - started < 5
    status = httpx.get(f"{topology.url('b')}/api/v1/jobs/{job_id}", timeout=10).json()
    assert status["status"] == "cancelled"
