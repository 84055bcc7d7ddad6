"""service.metrics: helpers change the scrape, the middleware labels route templates (never raw
paths), and multiprocess mode sums what separate processes recorded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.response import Stream
from litestar.testing import TestClient
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families

from service import metrics

REPO = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape() -> Samples:
    body, content_type = metrics.render_metrics()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)


def test_helpers_change_the_scrape() -> None:
    before = scrape()
    metrics.job_submitted("diagnose")
    metrics.job_finished("diagnose", "completed")
    metrics.fallback("medgemma", "knowledge")
    metrics.admission_rejected("queue_full")
    metrics.admission_rejected("Free text: Jane Doe, DOB 1970-01-01")  # not a vocabulary word
    metrics.lease_expired()
    metrics.job_retried()
    metrics.set_queue_depth(3)
    metrics.observe_queue_wait(0.2)
    metrics.llm_first_token(0.7)
    metrics.llm_rate(12.5)
    metrics.observe_stage("decode", 0.01)
    with metrics.timed_stage("narrate"):
        pass
    with pytest.raises(RuntimeError), metrics.timed_stage("render"):
        raise RuntimeError("timed even when it raises")
    metrics.set_job_states({"queued": 2, "running": 1})
    metrics.set_job_states({"running": 4})  # a state that disappears drops to 0
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("skinscreen_jobs_submitted_total", kind="diagnose") == 1
    assert delta("skinscreen_jobs_finished_total", kind="diagnose", status="completed") == 1
    assert (
        delta(
            "skinscreen_narrator_fallbacks_total", from_narrator="medgemma", to_narrator="knowledge"
        )
        == 1
    )
    assert delta("skinscreen_admission_rejections_total", reason="queue_full") == 1
    assert delta("skinscreen_admission_rejections_total", reason="other") == 1
    assert delta("skinscreen_lease_expiries_total") == 1
    assert delta("skinscreen_job_retries_total") == 1
    assert value(after, "skinscreen_queue_depth") == 3
    assert delta("skinscreen_queue_wait_seconds_count") == 1
    assert delta("skinscreen_llm_first_token_seconds_count") == 1
    assert delta("skinscreen_llm_tokens_per_second_sum") == pytest.approx(12.5)
    for stage in ("decode", "narrate", "render"):
        assert delta("skinscreen_stage_seconds_count", stage=stage) == 1
    assert value(after, "skinscreen_jobs_in_state", state="running") == 4
    assert value(after, "skinscreen_jobs_in_state", state="queued") == 0
    assert not any("jane" in str(labels).lower() for _, labels in after)


@get("/items/{item_id:str}")
async def item(item_id: FromPath[str]) -> dict[str, int]:
    return {"length": len(item_id)}


@get("/stream")
async def stream() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            await asyncio.sleep(0.05)
            yield f"data: {n}\n\n".encode()

    return Stream(chunks(), media_type="text/event-stream")


@get("/metrics", media_type="text/plain")
async def metrics_route() -> bytes:
    return metrics.render_metrics()[0]


def tiny_app(*, with_middleware: bool = True) -> Litestar:
    middleware = [metrics.metrics_middleware] if with_middleware else []
    return Litestar([item, stream, metrics_route], middleware=middleware)


def test_middleware_records_the_template_not_the_id() -> None:
    before = scrape()
    with TestClient(tiny_app()) as client:
        assert client.get("/items/SECRET-123").status_code == 200
        assert client.get("/items/SECRET-456").status_code == 200
        response = client.get("/stream")
        assert response.status_code == 200 and response.text.count("data:") == 3
        body = client.get("/metrics").text
    after = scrape()
    assert "SECRET" not in body and "SECRET" not in metrics.render_metrics()[0].decode()
    labels = {"route": "/items/{item_id}", "method": "GET", "status": "200"}
    assert (
        value(after, "skinscreen_http_requests_total", **labels)
        - value(before, "skinscreen_http_requests_total", **labels)
        == 2
    )
    stream_labels = {"route": "/stream", "method": "GET"}
    # the stream was timed until its last chunk (3 x 50 ms), not until its headers
    assert (
        value(after, "skinscreen_http_request_seconds_sum", **stream_labels)
        - value(before, "skinscreen_http_request_seconds_sum", **stream_labels)
        >= 0.14
    )
    # /metrics scrapes are not themselves counted
    assert not any(("route", "/metrics") in labels for _, labels in after)


def test_wrapped_outside_litestar_labels_unmatched_paths() -> None:
    before = scrape()
    with TestClient(metrics.metrics_middleware(tiny_app(with_middleware=False))) as client:
        assert client.get("/no/such/PATIENT-789").status_code == 404
        assert client.get("/items/SECRET-1").status_code == 200
    after = scrape()
    text = metrics.render_metrics()[0].decode()
    assert "PATIENT-789" not in text and "SECRET" not in text
    for labels in (
        {"route": "unmatched", "method": "GET", "status": "404"},
        {"route": "/items/{item_id}", "method": "GET", "status": "200"},
    ):
        name = "skinscreen_http_requests_total"
        assert value(after, name, **labels) - value(before, name, **labels) == 1


def test_route_label_without_routing() -> None:
    assert metrics.route_label({"type": "http", "path": "/items/SECRET"}) == "unmatched"


CHILD = """
import os, sys
from service import metrics
for _ in range(int(sys.argv[1])):
    metrics.job_submitted("diagnose")
metrics.set_queue_depth(2)
print(os.getpid())
"""


def test_multiprocess_counts_sum_over_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"PATH": "/usr/bin:/bin", metrics.MULTIPROC_ENV: str(tmp_path)}
    pids = [
        int(
            subprocess.run(
                [sys.executable, "-c", CHILD, str(n)],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout.strip()
        )
        for n in (2, 3)
    ]
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one set of files per process
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    samples = scrape()
    assert value(samples, "skinscreen_jobs_submitted_total", kind="diagnose") == 5
    assert value(samples, "skinscreen_queue_depth") == 4  # livesum over both workers
    multiprocess.mark_process_dead(pids[0], path=str(tmp_path))  # type: ignore[no-untyped-call]
    assert value(scrape(), "skinscreen_queue_depth") == 2  # a dead worker's gauge drops out
