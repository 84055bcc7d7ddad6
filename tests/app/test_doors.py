"""Door logic on the in-process app built from fakes: `create_app(services=fake_services(...))`.

The classifier, narrator and renderer are fakes (each real one has its own tests); the intake,
the jobs, the store, the outputs and every route are the real ones.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from service.app import create_app
from service.bootstrap import Services
from service.outputs.dicom import DicomOutput
from service.outputs.fhir import FhirOutput
from service.pipeline.case import Case
from tests.dicom_factory import vl_photo
from tests.support.factories import (
    FixedScreener,
    ScriptedNarrator,
    UnavailableNarrator,
    classification,
    fake_deps,
    fake_services,
    gate,
    jpeg,
)

FHIR = "application/fhir+json"
DIAGNOSE = "/fhir/DiagnosticReport/$diagnose"


def client_for(services: Services) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(services.settings, services=services)) as client:
        yield client


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return fake_services(tmp_path, fake_deps(outputs=[FhirOutput(), DicomOutput()]))


@pytest.fixture
def client(services: Services) -> Iterator[TestClient[Any]]:
    yield from client_for(services)


def upload(**fields: str) -> dict[str, Any]:
    return {"files": {"image": ("p.jpg", jpeg(), "image/jpeg")}, "data": fields}


def parameters(*extra: dict[str, Any]) -> str:
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    return json.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "image", "valueAttachment": image}, *extra],
        }
    )


def test_classify_returns_the_verdict_and_a_heatmap_on_request(client: TestClient[Any]) -> None:
    plain = client.post("/api/v1/classify", **upload())
    assert plain.status_code == 200
    body = plain.json()
    assert (body["status"], body["label"], body["gate"]["status"]) == ("ok", "Acne", "ok")
    assert "heatmap" not in body
    explained = client.post("/api/v1/classify?explain=true", **upload()).json()
    assert explained["heatmap"].startswith("data:image/png;base64,")


def test_rejected_photo_is_200_without_probabilities(tmp_path: Path) -> None:
    screener = FixedScreener(gate("rejected", "not_skin"), classification("Carcinoma", 0.9))
    services = fake_services(tmp_path, fake_deps(screener=screener))
    for client in client_for(services):
        body = client.post("/api/v1/classify?explain=true", **upload()).json()
        assert (body["status"], body["reasons"], body["label"]) == ("rejected", ["not_skin"], None)
        assert "probabilities" not in body and "heatmap" not in body
        analyzed = client.post("/api/v1/analyze", **upload()).json()
        assert "Carcinoma" not in analyzed["summary"]


def test_analyze_is_not_persisted(client: TestClient[Any], services: Services) -> None:
    body = client.post("/api/v1/analyze", **upload(language="vi")).json()
    assert body["language"] == "vi" and body["summary"]
    assert body["image"] == {"width": 96, "height": 96, "media_type": "image/jpeg"}
    assert services.store.db.get_job(body["case_id"]) is None


def test_diagnose_persists_the_case_before_answering(
    client: TestClient[Any], services: Services
) -> None:
    photo = jpeg((120, 80))
    response = client.post(
        "/api/v1/diagnose",
        files={"image": ("p.jpg", photo, "image/jpeg")},
        data={"patient_name": "Kim Minjun", "history": "itchy"},
    )
    assert response.status_code == 200
    body = response.json()
    job_id = body["case_id"]
    assert body["report"]["narrative"] == "chunk 0 chunk 1 chunk 2 "
    assert body["pdf"]["url"] == f"/api/v1/reports/{job_id}.pdf"
    stored = services.store.db.get_case(job_id)
    assert stored is not None
    case = Case.from_record(*stored)
    assert case.data == photo and case.patient.name == "Kim Minjun" and case.history == "itchy"
    for path, kind in (
        (f"/api/v1/reports/{job_id}.pdf", "application/pdf"),
        (f"/api/v1/reports/{job_id}.dcm", "application/dicom"),
        (f"/fhir/DiagnosticReport/{job_id}", FHIR),
    ):
        fetched = client.get(path)
        assert fetched.status_code == 200 and fetched.headers["content-type"].startswith(kind)


def test_narrator_fallback_is_reported(tmp_path: Path) -> None:
    services = fake_services(tmp_path, fake_deps(narrator=UnavailableNarrator()))
    for client in client_for(services):
        body = client.post("/api/v1/diagnose", **upload()).json()
        assert body["narrator_fallback"]["partial_discarded"] is False
        assert body["report"]["notices"] == ["narrator_fallback"]


def test_back_pressure_on_every_door(tmp_path: Path) -> None:
    services = fake_services(tmp_path, fake_deps(narrator=ScriptedNarrator(full=True)))
    for client in client_for(services):
        for path in ("/api/v1/diagnose", "/api/v1/diagnose-stream"):
            refused = client.post(path, **upload())
            assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
            assert refused.headers["content-type"].startswith("application/problem+json")
        fhir = client.post(
            "/fhir/DiagnosticReport/$diagnose", content=parameters(), headers={"content-type": FHIR}
        )
        assert fhir.status_code == 503 and fhir.json()["resourceType"] == "OperationOutcome"
        stow = client.post(
            "/dicomweb/studies",
            content=b"--b\r\nContent-Type: application/dicom\r\n\r\n"
            + vl_photo(Image.new("RGB", (64, 64), (190, 140, 120)))
            + b"\r\n--b--\r\n",
            headers={"content-type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
        assert stow.status_code == 409  # every instance failed: out of resources
        assert stow.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA700]
        assert client.post("/api/v1/classify", **upload()).status_code == 200  # not a run slot


def test_errors_are_problems_and_outcomes(client: TestClient[Any]) -> None:
    wrong_type = client.post(
        "/api/v1/diagnose", content=b"x", headers={"content-type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    language = client.post("/api/v1/diagnose", **upload(language="xx"))
    assert language.status_code == 422 and language.json()["code"] == "unsupported-language"
    fhir_language = client.post(
        "/fhir/DiagnosticReport/$diagnose?language=xx",
        content=parameters(),
        headers={"content-type": FHIR},
    )
    assert fhir_language.status_code == 422
    assert fhir_language.json()["resourceType"] == "OperationOutcome"
    bad_json = client.post(
        "/fhir/DiagnosticReport/$diagnose", content=b"{", headers={"content-type": FHIR}
    )
    assert bad_json.status_code == 400 and bad_json.json()["resourceType"] == "OperationOutcome"
    xml = client.get("/fhir/metadata", headers={"accept": "application/fhir+xml"})
    assert xml.status_code == 406
    assert client.get("/api/v1/jobs/nope").status_code == 404


def test_a_failing_stage_is_a_500_problem_without_internals(tmp_path: Path) -> None:
    class Exploding(FixedScreener):
        def screen(self, image: Image.Image) -> Any:
            raise RuntimeError("secret internals")

    services = fake_services(tmp_path, fake_deps(screener=Exploding()))
    for client in client_for(services):
        response = client.post("/api/v1/diagnose", **upload())
        assert response.status_code == 500
        body = response.json()
        assert body["stage"] == "screen" and "secret" not in json.dumps(body)


def test_fhir_sync_bundle_and_async_poll(client: TestClient[Any]) -> None:
    bundle = client.post(
        "/fhir/DiagnosticReport/$diagnose?output=bundle",
        content=parameters(),
        headers={"content-type": FHIR},
    )
    assert bundle.status_code == 200 and bundle.json()["resourceType"] == "Bundle"
    accepted = client.post(
        "/fhir/DiagnosticReport/$diagnose",
        content=parameters(),
        headers={"content-type": FHIR, "prefer": "respond-async"},
    )
    assert accepted.status_code == 202
    status_url = accepted.headers["content-location"]
    deadline = time.monotonic() + 60  # a hang guard, not a timing: the run needs what it needs
    while (polled := client.get(status_url)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert polled.status_code == 200 and polled.json()["type"] == "batch-response"
    (entry,) = polled.json()["entry"]
    assert entry["resource"]["resourceType"] == "DiagnosticReport"
    assert entry["response"]["status"] == "201 Created"
    report_id = entry["resource"]["id"]
    assert entry["response"]["location"].endswith(f"/fhir/DiagnosticReport/{report_id}")


def test_cancel_and_conflict(tmp_path: Path) -> None:
    narrator = ScriptedNarrator(chunks=1000, delay_s=0.02)
    services = fake_services(tmp_path, fake_deps(narrator=narrator))
    for client in client_for(services):
        accepted = client.post(  # TestClient buffers streams: start the job asynchronously
            "/fhir/DiagnosticReport/$diagnose",
            content=parameters(),
            headers={"content-type": FHIR, "prefer": "respond-async"},
        )
        job_id = accepted.headers["content-location"].rsplit("/", 1)[-1]
        cancelled = client.delete(f"/api/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and narrator.produced < 1000
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 409


def test_metrics_count_routes_by_template_and_jobs_by_state(client: TestClient[Any]) -> None:
    body = client.post("/api/v1/diagnose", **upload(patient_name="Hong Gildong")).json()
    job_id = body["case_id"]
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert 'route="/api/v1/jobs/{job_id}"' in text
    assert 'skinscreen_jobs_in_state{state="completed"}' in text
    assert 'skinscreen_stage_seconds_count{stage="screen"}' in text
    assert job_id not in text and "Hong" not in text  # no identifiers, no PHI


def test_ready_reports_the_store(client: TestClient[Any]) -> None:
    body = client.get("/ready").json()
    assert body["status"] == "ready"
    assert body["store"] == {"backend": "sqlite", "ok": True, "writable": True}
    assert body["worker"] is True


def test_a_finished_job_can_be_erased(client: TestClient[Any], services: Services) -> None:
    job_id = client.post("/api/v1/diagnose", **upload()).json()["case_id"]
    erased = client.delete(f"/api/v1/jobs/{job_id}?erase=true")
    assert erased.status_code == 200 and erased.json()["status"] == "erased"
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/v1/reports/{job_id}.pdf").status_code == 404
    assert services.store.db.get_case(job_id) is None  # the photo is gone too


@pytest.mark.parametrize(
    ("limits", "status"),
    [({"max_queued_jobs": 1}, 503), ({"max_queued_jobs": 10, "max_queued_per_client": 1}, 429)],
)
def test_admission_control_answers_with_retry_after(
    tmp_path: Path, limits: dict[str, int], status: int
) -> None:
    from service.settings import Settings

    settings = Settings(data_dir=tmp_path, job_lease_s=3.0, **limits)
    narrator = ScriptedNarrator(chunks=200, delay_s=0.02)
    services = fake_services(tmp_path, fake_deps(narrator=narrator), settings)
    async_fhir = {"content-type": FHIR, "prefer": "respond-async"}
    for client in client_for(services):
        first = client.post(
            "/fhir/DiagnosticReport/$diagnose", content=parameters(), headers=async_fhir
        )
        assert first.status_code == 202
        refused = client.post("/api/v1/diagnose", **upload())
        assert refused.status_code == status and int(refused.headers["retry-after"]) > 0
        assert refused.json()["status"] == status
        fhir = client.post(
            "/fhir/DiagnosticReport/$diagnose", content=parameters(), headers=async_fhir
        )
        assert fhir.status_code == status and fhir.json()["resourceType"] == "OperationOutcome"
        job_id = first.headers["content-location"].rsplit("/", 1)[-1]
        client.delete(f"/api/v1/jobs/{job_id}")


def test_routing_errors_speak_the_door_format(client: TestClient[Any]) -> None:
    unknown = client.get("/fhir/Nope")
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    method = client.request("TRACE", "/fhir/metadata")
    assert method.status_code == 405 and method.json()["resourceType"] == "OperationOutcome"
    rest = client.get("/api/v1/nope")
    assert rest.status_code == 404
    assert rest.headers["content-type"].startswith("application/problem+json")
    schema = client.get("/schema/0")
    assert schema.status_code == 404
    assert schema.headers["content-type"].startswith("application/problem+json")
    huge = client.get("/fhir/AuditEvent?_offset=9223372036854775808")
    assert huge.status_code == 400 and huge.json()["resourceType"] == "OperationOutcome"
