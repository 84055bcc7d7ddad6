"""FHIR write-back over real HTTP: subject resolution on the FHIR server and transaction POST.

No real FHIR server can be installed here in reasonable time (HAPI needs a JVM and Maven
downloads, none is packaged on PyPI, Debian or npm), so the tests run a small FHIR server made
for them on loopback: it serves `Patient/123`, answers 404 for other Patients, validates each
posted transaction Bundle against HL7's R4 JSON Schema and answers a real
`transaction-response` Bundle (or HTTP 500 when told to fail).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_mappings.validation import R4SchemaValidator
from service.fhir_server import server_patient
from tests.support.fhir_checks import assert_valid_r4
from tests.support.live_server import LiveServer, free_port, start_server, stop_server

FHIR = "application/fhir+json"
FAMILY = "Trần-Oakley"
PATIENT_123 = {
    "resourceType": "Patient",
    "id": "123",
    "meta": {"versionId": "1"},
    "identifier": [{"system": "urn:oid:1.2.3.4", "value": "MRN-0123"}],
    "name": [{"use": "official", "family": FAMILY, "given": ["Linh"]}],
    "gender": "female",
    "birthDate": "1975-06-15",
}


@dataclass
class FakeFhirServer:
    """The FHIR server state the handler shares with the tests."""

    validator: R4SchemaValidator
    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fail_posts: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def handler_for(state: FakeFhirServer) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to `state`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def answer(self, status: int, body: dict[str, Any]) -> None:
            content = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", f"{FHIR}; charset=utf-8")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def do_GET(self) -> None:
            if self.path == "/fhir/Patient/123" and FHIR in self.headers.get("Accept", ""):
                self.answer(200, PATIENT_123)
            else:
                self.answer(404, outcome("not-found", f"{self.path} is not known"))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            problems = transaction_problems(self, body, state.validator)
            with state.lock:
                state.posts.append(body)
                state.problems += problems
            if problems:
                self.answer(400, outcome("invalid", "; ".join(problems)[:500]))
            elif state.fail_posts:
                self.answer(500, outcome("exception", "database unavailable"))
            else:
                self.answer(200, transaction_response(body))

    return Handler


def outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def transaction_problems(
    request: BaseHTTPRequestHandler, body: Any, validator: R4SchemaValidator
) -> list[str]:
    """What a FHIR server would refuse in a transaction POST to its base."""
    if request.path != "/fhir" or request.headers.get("Content-Type") != FHIR:
        return [f"POST {request.path} with {request.headers.get('Content-Type')}"]
    if not isinstance(body, dict) or body.get("type") != "transaction":
        return ["not a transaction Bundle"]
    problems = validator.validate(body)
    for index, entry in enumerate(body.get("entry") or []):
        if entry["request"]["method"] != "POST":
            problems.append(f"entry[{index}] is not a POST")
    return problems


def transaction_response(bundle: dict[str, Any]) -> dict[str, Any]:
    """A `transaction-response` with a 201 Created entry (and location) per request entry."""
    entries = []
    for number, entry in enumerate(bundle["entry"], start=1):
        kind = entry["resource"]["resourceType"]
        location = f"{kind}/{1000 + number}/_history/1"
        entries.append({"response": {"status": "201 Created", "location": location}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


@pytest.fixture(scope="module")
def fhir_server(shared_dir: Path) -> Iterator[FakeFhirServer]:
    """The loopback FHIR server, in a thread."""
    state = FakeFhirServer(R4SchemaValidator(shared_dir / "fhir" / "r4" / "fhir.schema.json"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    """Every test starts with no recorded POSTs and POSTs succeeding."""
    if "fhir_server" in request.fixturenames:
        state: FakeFhirServer = request.getfixturevalue("fhir_server")
        state.posts.clear()
        state.problems.clear()
        state.fail_posts = False


def service(
    factory: pytest.TempPathFactory, fhir_url: str, write_back: bool
) -> Iterator[LiveServer]:
    server = start_server(
        factory.mktemp("write-back"),
        {
            "SKINSCREEN_FHIR_SERVER_URL": fhir_url,
            "SKINSCREEN_FHIR_WRITE_BACK": "true" if write_back else "false",
            "SKINSCREEN_FHIR_FETCH_TIMEOUT_S": "5",
        },
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def writing(
    tmp_path_factory: pytest.TempPathFactory, fhir_server: FakeFhirServer
) -> Iterator[LiveServer]:
    """The service with write-back on."""
    yield from service(tmp_path_factory, fhir_server.url, write_back=True)


@pytest.fixture(scope="module")
def reading(
    tmp_path_factory: pytest.TempPathFactory, fhir_server: FakeFhirServer
) -> Iterator[LiveServer]:
    """The service with a FHIR server but write-back off (the default)."""
    yield from service(tmp_path_factory, fhir_server.url, write_back=False)


def by_reference(image: bytes, reference: str) -> dict[str, Any]:
    jpeg = {"contentType": "image/jpeg", "data": base64.b64encode(image).decode()}
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueReference": {"reference": reference}},
            {"name": "image", "valueAttachment": jpeg},
        ],
    }


def diagnose(server: LiveServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/fhir/DiagnosticReport/$diagnose",
        content=json.dumps(body).encode(),
        headers={"content-type": FHIR, **headers},
        timeout=90,
    )


def job(server: LiveServer, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def report_patient(server: LiveServer, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/v1/reports/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    patient: dict[str, Any] = response.json()["patient"]
    return patient


def log_lines(server: LiveServer) -> list[dict[str, Any]]:
    lines = []
    for line in server.logs().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return [line for line in lines if isinstance(line, dict)]


def test_async_subject_resolved_and_transaction_written_back(
    writing: LiveServer, fhir_server: FakeFhirServer, skin_jpeg: bytes, shared_dir: Path
) -> None:
    r = diagnose(writing, by_reference(skin_jpeg, "Patient/123"), prefer="respond-async")
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 90
    while (poll := httpx.get(r.headers["content-location"], timeout=10)).status_code == 202:
        assert "x-write-back-status" not in poll.headers
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert poll.status_code == 200, poll.text
    assert poll.headers["x-write-back-status"] == "succeeded"
    assert_valid_r4(poll.json(), shared_dir)
    assert poll.json()["type"] == "batch-response"
    report = poll.json()["entry"][0]["resource"]
    assert report["subject"]["reference"] == "Patient/123"
    assert report["subject"]["display"] and report["subject"]["identifier"]["value"]
    patient = report_patient(writing, report["id"])
    assert patient["name"] == f"Linh {FAMILY}"
    assert (patient["sex"], patient["birth_date"]) == ("female", "1975-06-15")

    assert fhir_server.problems == []
    [posted] = fhir_server.posts
    assert_valid_r4(posted, shared_dir)
    kinds = [e["resource"]["resourceType"] for e in posted["entry"]]
    assert "Patient" not in kinds and "DiagnosticReport" in kinds
    posted_report = next(
        e["resource"] for e in posted["entry"] if e["request"]["url"] == "DiagnosticReport"
    )
    assert posted_report["subject"]["reference"] == "Patient/123"

    write_back = job(writing, report["id"])["write_back"]
    assert write_back["status"] == "succeeded" and write_back["http_status"] == 200
    assert len(write_back["entries"]) == len(posted["entry"])
    assert {e["status"] for e in write_back["entries"]} == {"201 Created"}
    assert write_back["entries"][0]["location"].endswith("/_history/1")
    stored = httpx.get(f"{writing.url}/fhir/jobs/{report['id']}", timeout=10)
    assert stored.headers["x-write-back-status"] == "succeeded"
    logs = writing.logs()
    assert "fhir.write_back" in logs
    assert FAMILY not in logs and "1975-06-15" not in logs and "MRN-0123" not in logs


def test_absolute_subject_in_a_bundle_is_resolved(
    writing: LiveServer, fhir_server: FakeFhirServer, skin_jpeg: bytes
) -> None:
    media = {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": f"{fhir_server.url}/Patient/123"},
        "content": {"contentType": "image/jpeg", "data": base64.b64encode(skin_jpeg).decode()},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "urn:uuid:0d9a3c52-7b1e-4d55-9a57-2f6f3b0c1e11", "resource": media}],
    }
    r = diagnose(writing, bundle)
    assert r.status_code == 200, r.text
    assert r.headers["x-write-back-status"] == "succeeded"
    assert report_patient(writing, r.json()["id"])["name"] == f"Linh {FAMILY}"
    [posted] = fhir_server.posts
    subjects = {(e["resource"].get("subject") or {}).get("reference") for e in posted["entry"]}
    assert "Patient/123" in subjects


def test_unknown_patient_is_422(
    writing: LiveServer, fhir_server: FakeFhirServer, skin_jpeg: bytes
) -> None:
    r = diagnose(writing, by_reference(skin_jpeg, "Patient/999"))
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert r.json()["resourceType"] == "OperationOutcome"
    assert issue["diagnostics"] == "subject Patient/999 not found on the FHIR server"
    assert fhir_server.posts == []


def test_failed_post_keeps_the_report_and_records_the_failure(
    writing: LiveServer, fhir_server: FakeFhirServer, skin_jpeg: bytes, shared_dir: Path
) -> None:
    fhir_server.fail_posts = True
    body = by_reference(skin_jpeg, "Patient/123")
    body["parameter"].append({"name": "output", "valueCode": "bundle"})
    r = diagnose(writing, body)
    assert r.status_code == 200, r.text
    assert r.headers["x-write-back-status"] == "failed"
    bundle = r.json()
    assert_valid_r4(bundle, shared_dir)
    assert bundle["type"] == "transaction" and len(fhir_server.posts) == 1
    job_id = r.headers["x-job-id"]
    write_back = job(writing, job_id)["write_back"]
    assert write_back["status"] == "failed" and write_back["http_status"] == 500
    assert "HTTP 500" in write_back["error"] and write_back["entries"] == []
    assert any(
        line.get("event") == "fhir.write_back" and line.get("status") == "failed"
        for line in log_lines(writing)
    )


def test_write_back_off_posts_nothing(
    reading: LiveServer, fhir_server: FakeFhirServer, skin_jpeg: bytes
) -> None:
    r = diagnose(reading, by_reference(skin_jpeg, "Patient/123"))
    assert r.status_code == 200, r.text
    assert "x-write-back-status" not in r.headers
    report_id = r.json()["id"]
    assert report_patient(reading, report_id)["name"] == f"Linh {FAMILY}"
    assert job(reading, report_id)["write_back"] is None
    assert fhir_server.posts == []


def test_fhir_server_down_is_503(
    tmp_path_factory: pytest.TempPathFactory, skin_jpeg: bytes
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/fhir"
    server = start_server(
        tmp_path_factory.mktemp("fhir-down"),
        {"SKINSCREEN_FHIR_SERVER_URL": dead, "SKINSCREEN_FHIR_WRITE_BACK": "true"},
    )
    try:
        r = diagnose(server, by_reference(skin_jpeg, "Patient/123"))
    finally:
        stop_server(server)
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) > 0
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "cannot be reached" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "reference,expected",
    [
        ("Patient/123", "Patient/123"),
        ("http://fhir.test:8080/fhir/Patient/a-1.b", "Patient/a-1.b"),
        ("http://FHIR.test:8080/fhir/Patient/123", "Patient/123"),
        ("http://other.test:8080/fhir/Patient/123", None),
        ("http://fhir.test:8080/fhir/../Patient/123", None),
        ("http://user@fhir.test:8080/fhir/Patient/123", None),
        ("Patient/123/_history/2", None),
        ("Patient?identifier=x", None),
        ("urn:uuid:5f0c6a8e-3b7d-4c1e-9a2f-8d4b6e1f0a23", None),
        ("Group/123", None),
    ],
)
def test_only_patients_on_the_configured_server_are_read(
    reference: str, expected: str | None
) -> None:
    assert server_patient(reference, "http://fhir.test:8080/fhir") == expected
    assert server_patient(reference, None) is None
