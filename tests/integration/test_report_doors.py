"""Blocking doors (analyze, diagnose), report reads, and the LLM-down fallback, over real HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sse_client import SseEvent, iter_sse
from tests.support.live_server import LiveServer, free_port, start_server, stop_server


def test_analyze_is_classification_plus_summary(live_server: LiveServer, skin_jpeg: bytes) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/analyze",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        headers={"accept-language": "vi-VN,vi;q=0.9,en;q=0.5"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == "vi"
    assert body["classification"]["status"] in ("ok", "inconclusive")
    assert body["summary"] and body["gate"]["status"] == body["classification"]["status"]


def test_diagnose_blocking_returns_report_and_links(
    live_server: LiveServer, skin_jpeg: bytes
) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/diagnose",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        data={
            "patient_name": "Lee",
            "patient_age": "61",
            "patient_sex": "male",
            "language": "en",
            "history": "itchy for 3 weeks",
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    report = body["report"]
    assert report["patient"] == {
        "name": "Lee",
        "age": 61,
        "sex": "male",
        "birth_date": None,
        "identifier": None,
    }
    assert report["narrator"]["without_llm"] is True
    assert set(report["sections"]) >= {"observations", "recommendations"}
    stored = httpx.get(live_server.url + body["links"]["report"]).json()
    assert stored["case_id"] == report["case_id"]
    pdf = httpx.get(live_server.url + body["links"]["pdf"])
    assert pdf.content.startswith(b"%PDF") and len(pdf.content) == body["pdf"]["size"]
    assert httpx.get(f"{live_server.url}/api/v1/reports/{'0' * 32}.pdf").status_code == 404


def test_pdf_embeds_the_fhir_report(
    live_server: LiveServer, skin_jpeg: bytes, tmp_path: Path
) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/diagnose",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        timeout=60,
    )
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(httpx.get(live_server.url + r.json()["links"]["pdf"]).content)
    listing = subprocess.run(
        ["pdfdetach", "-list", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "diagnostic-report.fhir.json" in listing


@pytest.mark.parametrize(
    "field,value", [("patient_age", "abc"), ("patient_age", "200"), ("patient_sex", "robot")]
)
def test_invalid_patient_fields_are_422(
    live_server: LiveServer, skin_jpeg: bytes, field: str, value: str
) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/diagnose",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        data={field: value},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == field


@pytest.fixture(scope="module")
def llm_down_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service configured for an OpenAI-compatible LLM that is not running."""
    server = start_server(
        tmp_path_factory.mktemp("llm-down"),
        {
            "SKINSCREEN_NARRATOR": "openai",
            "SKINSCREEN_OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
            "SKINSCREEN_OPENAI_RETRIES": "1",
            "SKINSCREEN_OPENAI_CONNECT_TIMEOUT_S": "0.5",
        },
    )
    yield server
    stop_server(server)


def test_llm_down_falls_back_to_knowledge(llm_down_server: LiveServer, skin_jpeg: bytes) -> None:
    with httpx.stream(
        "POST",
        f"{llm_down_server.url}/api/v1/diagnose-stream",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        data={"language": "ko"},
        timeout=60,
    ) as response:
        events = [e for e in iter_sse(response) if isinstance(e, SseEvent)]
    names = [e.name for e in events]
    assert "narrator.fallback" in names and names[-1] == "completed"
    fallback = events[names.index("narrator.fallback")].data
    assert fallback["to"] == "skinscreen-knowledge-base"
    report = events[names.index("report.completed")].data["report"]
    assert report["narrator"]["without_llm"] is True
    assert report["notices"] == ["narrator_fallback"]
    pdf_url = events[-1].data["links"]["pdf"]
    text = subprocess.run(
        ["pdftotext", "-", "-"],
        input=httpx.get(llm_down_server.url + pdf_url).content,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "narrator_fallback" not in text  # the PDF shows the localized notice, not the code


def test_no_patient_data_or_report_text_in_logs(live_server: LiveServer, skin_jpeg: bytes) -> None:
    name, history = "Zyxwvut Quobble", "history-secret-4242 since childhood"
    r = httpx.post(
        f"{live_server.url}/api/v1/diagnose-stream",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        data={"patient_name": name, "patient_age": "47", "history": history, "language": "en"},
        timeout=60,
    )
    assert r.status_code == 200
    deltas = [
        json.loads(line[6:])["text"]
        for line in r.text.splitlines()
        if line.startswith('data: {"text"')
    ]
    logs = live_server.logs()
    assert name not in logs and "Quobble" not in logs
    assert "history-secret-4242" not in logs
    for chunk in deltas:
        if len(chunk) > 40:
            assert chunk not in logs, "report text must not be logged"
