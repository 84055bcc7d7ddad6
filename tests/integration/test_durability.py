"""No case lost to a crash: `kill -9` of the embedded (SQLite) server mid-narration, and a
worker's SIGTERM with a grace period (PostgreSQL). Real processes on loopback."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from tests.integration.test_scale_out import follow, job_whose_last_event_is, submit
from tests.support.live_server import free_port, start_server, start_worker, stop_server
from tests.support.postgres import PostgresServer
from tests.support.postgres_fixture import postgres  # noqa: F401
from tests.support.slow_llm import SlowLlm


class _Single:
    """The one-replica shape `follow` expects."""

    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}"


def llm_env(url: str) -> dict[str, str]:
    return {
        "SKINSCREEN_NARRATOR": "openai",
        "SKINSCREEN_OPENAI_BASE_URL": url,
        "SKINSCREEN_OPENAI_RETRIES": "0",
        "SKINSCREEN_OPENAI_SEND_IMAGE": "false",
        "SKINSCREEN_REPORT_HEATMAP": "false",
    }


def test_the_embedded_server_resumes_a_case_after_kill_9(tmp_path: Path, skin_jpeg: bytes) -> None:
    with SlowLlm(chunks=12, delay_s=0.15) as llm:
        port = free_port()
        env = llm_env(llm.url)
        server = start_server(tmp_path, env, port=port)
        job_id = submit(server.url, skin_jpeg)
        seen: dict[str, list[str]] = {}
        follower = threading.Thread(
            target=follow, args=(_Single(port), "a", job_id, seen), daemon=True
        )
        follower.start()  # re-attaches with Last-Event-ID while the server is down
        job_whose_last_event_is(seen, "report.delta")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        started = time.monotonic()
        restarted = start_server(tmp_path, env, port=port)  # same data dir, same port
        try:
            follower.join(timeout=60)
            names = seen[job_id]
            assert names[-1] == "completed", names[-6:]
            assert "retrying" in names and names.count("completed") == 1
            assert time.monotonic() - started < 45  # taken over at start, not after the lease
            status = httpx.get(f"{restarted.url}/api/v1/jobs/{job_id}", timeout=10).json()
            assert status["status"] == "completed"
            pdf = httpx.get(f"{restarted.url}/api/v1/reports/{job_id}.pdf", timeout=10)
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        finally:
            stop_server(restarted)


def test_sigterm_releases_a_running_case_to_another_worker(
    postgres: PostgresServer,  # noqa: F811
    tmp_path: Path,
    skin_jpeg: bytes,
) -> None:
    with SlowLlm(chunks=20, delay_s=0.15) as llm:
        dsn = postgres.create_database(f"term{uuid.uuid4().hex[:10]}")
        env = {
            **llm_env(llm.url),
            "SKINSCREEN_DATABASE_URL": dsn,
            "SKINSCREEN_SHUTDOWN_GRACE_S": "1",
            "SKINSCREEN_JOB_LEASE_S": "30",
        }
        api = start_server(tmp_path, env, args=("--no-worker",), name="api")
        first = start_worker(tmp_path, env, name="first")
        try:
            job_id = submit(api.url, skin_jpeg)
            seen: dict[str, list[str]] = {}
            single = _Single(int(api.url.rsplit(":", 1)[1]))
            follower = threading.Thread(target=follow, args=(single, "a", job_id, seen))
            follower.start()
            job_whose_last_event_is(seen, "report.delta")
            started = time.monotonic()
            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(timeout=20) == 0  # exits cleanly after its grace period
            assert time.monotonic() - started < 15
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT status, worker FROM jobs WHERE id=%s", (job_id,))
                status, holder = row.fetchone() or ("?", "?")
            assert (status, holder) == ("queued", None)  # given back, not left to expire
            second = start_worker(tmp_path, env, name="second")
            follower.join(timeout=60)
            names = seen[job_id]
            assert names[-1] == "completed" and "retrying" in names
            assert names.count("completed") == 1
            second.process.send_signal(signal.SIGTERM)
            assert second.process.wait(timeout=20) == 0
        finally:
            stop_server(api)
            for worker in (first,):
                if worker.process.poll() is None:
                    os.kill(worker.process.pid, signal.SIGKILL)
