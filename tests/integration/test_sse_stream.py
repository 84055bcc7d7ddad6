"""Event order, schema, headers and re-attach through a real uvicorn on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.sse_client import SseEvent, event_schema, iter_sse
from tests.support.gated_llm import TEXT as GATED_TEXT
from tests.support.gated_llm import GatedLlm
from tests.support.live_server import LiveServer, start_server, stop_server

CONTRACT = json.loads(
    (Path(__file__).resolve().parents[2] / "contracts" / "sse-events.schema.json").read_text()
)
ORDER = [
    "accepted",
    "validated",
    "classified",
    "analysis",
    "report.delta",
    "report.completed",
    "pdf.ready",
    "completed",
]


def collapse(names: list[str]) -> list[str]:
    """Event names with runs of report.delta collapsed to one."""
    out: list[str] = []
    for name in names:
        if not (out and out[-1] == name == "report.delta"):
            out.append(name)
    return out


def stream_diagnose(
    server: LiveServer, image: bytes, **fields: str
) -> tuple[httpx.Headers, list[SseEvent], list[str]]:
    events: list[SseEvent] = []
    comments: list[str] = []
    with httpx.stream(
        "POST",
        f"{server.url}/api/v1/diagnose-stream",
        files={"image": ("photo.jpg", image, "image/jpeg")},
        data=fields,
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        headers = response.headers
        for item in iter_sse(response):
            (events if isinstance(item, SseEvent) else comments).append(item)
    return headers, events, comments


def test_stream_order_schema_and_headers(live_server: LiveServer, skin_jpeg: bytes) -> None:
    headers, events, comments = stream_diagnose(
        live_server,
        skin_jpeg,
        patient_name="Test Person",
        patient_age="34",
        patient_sex="female",
        language="en",
    )
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache, no-store"  # SSE + patient data
    assert headers["x-accel-buffering"] == "no"
    assert any(c.startswith("retry:") for c in comments)
    names = [e.name for e in events]
    assert collapse(names) == ORDER
    assert names.count("report.delta") > 3, "the narrative must stream in several chunks"
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    for event in events:
        jsonschema.validate(event.data, event_schema(CONTRACT, event.name))
    report = events[names.index("report.completed")].data["report"]
    deltas = "".join(e.data["text"] for e in events if e.name == "report.delta")
    assert report["narrative"] == deltas
    links = events[-1].data["links"]
    pdf = httpx.get(live_server.url + links["pdf"], timeout=10)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"


def test_reattach_with_last_event_id(live_server: LiveServer, skin_jpeg: bytes) -> None:
    headers, events, _ = stream_diagnose(live_server, skin_jpeg, language="vi")
    job_id = headers["x-job-id"]
    cut = 3
    with httpx.stream(
        "GET",
        f"{live_server.url}/api/v1/jobs/{job_id}/events",
        headers={"Last-Event-ID": str(cut)},
        timeout=30,
    ) as response:
        resumed = [e for e in iter_sse(response) if isinstance(e, SseEvent)]
    assert [e.id for e in resumed] == [e.id for e in events[cut:]]
    assert [e.data for e in resumed] == [e.data for e in events[cut:]]


def test_disconnect_does_not_cancel_and_reattach_live(
    live_server: LiveServer, skin_jpeg: bytes
) -> None:
    with httpx.stream(
        "POST",
        f"{live_server.url}/api/v1/diagnose-stream",
        files={"image": ("p.jpg", skin_jpeg, "image/jpeg")},
        data={"language": "ko"},
        timeout=30,
    ) as response:
        job_id = response.headers["x-job-id"]
        first = next(e for e in iter_sse(response) if isinstance(e, SseEvent))
        assert first.name == "accepted"
    # the client went away after the first event; the job must still finish
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline:
        status = httpx.get(f"{live_server.url}/api/v1/jobs/{job_id}").json()["status"]
        if status in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert status == "completed"
    with httpx.stream(
        "GET", f"{live_server.url}/api/v1/jobs/{job_id}/events?after=1", timeout=30
    ) as r:
        names = [e.name for e in iter_sse(r) if isinstance(e, SseEvent)]
    assert names[0] == "validated" and names[-1] == "completed"


def test_events_reach_the_client_while_the_narrator_is_still_blocked(
    tmp_path: Path, skin_jpeg: bytes
) -> None:
    """Streaming, not buffering: the client sees `classified` while the LLM is still holding
    its answer, and only then releases it. A buffering server would show the client nothing
    until the narrator gave up — the LLM then reports `timed_out` and this test fails."""
    with GatedLlm(hold_s=20) as llm:
        server = start_server(
            tmp_path,
            {
                "SKINSCREEN_NARRATOR": "openai",
                "SKINSCREEN_OPENAI_BASE_URL": llm.url,
                "SKINSCREEN_OPENAI_RETRIES": "0",
                "SKINSCREEN_OPENAI_SEND_IMAGE": "false",
            },
        )
        try:
            names: list[str] = []
            before_release: list[str] = []
            deltas: list[str] = []
            with httpx.stream(
                "POST",
                f"{server.url}/api/v1/diagnose-stream",
                files={"image": ("p.jpg", skin_jpeg, "image/jpeg")},
                timeout=60,
            ) as response:
                for item in iter_sse(response):
                    if not isinstance(item, SseEvent):
                        continue
                    names.append(item.name)
                    if item.name == "report.delta":
                        deltas.append(item.data["text"])
                    if item.name == "classified":
                        assert llm.waiting.wait(15), "the narrator never asked the LLM"
                        assert not llm.release.is_set() and not llm.timed_out
                        before_release = list(names)
                        llm.release.set()
        finally:
            stop_server(server)
    assert not llm.timed_out, "the client saw nothing until the narrator gave up: buffered"
    assert before_release == ["accepted", "validated", "classified"]
    assert names[-1] == "completed" and "narrator.fallback" not in names
    assert "".join(deltas) == "".join(GATED_TEXT)


@pytest.mark.parametrize("language", ["xx", "EN-gb-long"])
def test_unknown_language_is_422(live_server: LiveServer, skin_jpeg: bytes, language: str) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/diagnose-stream",
        files={"image": ("p.jpg", skin_jpeg, "image/jpeg")},
        data={"language": language},
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["supported"] == ["ko", "en", "vi"]


def test_missing_image_is_422(live_server: LiveServer) -> None:
    r = httpx.post(f"{live_server.url}/api/v1/diagnose-stream", files={"other": ("x", b"1")})
    assert r.status_code == 422
    assert r.json()["code"] == "unprocessable"


def test_cancel_unknown_and_finished_jobs(live_server: LiveServer, skin_jpeg: bytes) -> None:
    assert httpx.delete(f"{live_server.url}/api/v1/jobs/{'0' * 32}").status_code == 404
    headers, _, _ = stream_diagnose(live_server, skin_jpeg)
    r = httpx.delete(f"{live_server.url}/api/v1/jobs/{headers['x-job-id']}")
    assert r.status_code == 409
