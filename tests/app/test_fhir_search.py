"""FHIR search, the async status URL and the HTTP details of the FHIR door, on the in-process
app (real intake, jobs, store, outputs and routes; fake classifier, narrator, renderer).
Every FHIR body answered is checked with `assert_valid_r4` (schema, invariants, two parsers)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.outputs.fhir import FhirOutput
from service.settings import Settings
from tests.support.factories import (
    FixedScreener,
    ScriptedNarrator,
    fake_deps,
    fake_services,
    jpeg,
)
from tests.support.fhir_checks import assert_valid_r4

FHIR = {"content-type": "application/fhir+json"}
DIAGNOSE = "/fhir/DiagnosticReport/$diagnose"
PUBLIC = "https://fhir.clinic.example"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    settings = Settings(data_dir=tmp_path, job_lease_s=3.0, public_base_url=PUBLIC)
    services = fake_services(tmp_path, fake_deps(outputs=[FhirOutput()]), settings)
    with TestClient(create_app(settings, services=services)) as test_client:
        yield test_client


def diagnose(client: TestClient[Any], patient: dict[str, Any] | None = None) -> str:
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    parameter: list[dict[str, Any]] = [{"name": "image", "valueAttachment": image}]
    if patient is not None:
        parameter.append({"name": "subject", "resource": patient})
    body = json.dumps({"resourceType": "Parameters", "parameter": parameter})
    answer = client.post(DIAGNOSE, content=body, headers=FHIR)
    assert answer.status_code == 200, answer.text
    assert "location" not in answer.headers  # a 200 creates nothing at a new URL
    return str(answer.json()["id"])


def patient(pid: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:oid:1.2.3", "value": mrn}],
        "gender": "female",
    }


def test_search_reports_by_patient_identifier_status_code_and_date(
    client: TestClient[Any], shared_dir: Path
) -> None:
    first = diagnose(client, patient("p1", "MRN-1"))
    second = diagnose(client, patient("p2", "MRN-2"))
    third = diagnose(client, patient("p1", "MRN-1"))
    found = client.get("/fhir/DiagnosticReport", params={"patient": "Patient/p1"}).json()
    assert_valid_r4(found, shared_dir)
    assert found["type"] == "searchset" and found["total"] == 2
    assert [e["resource"]["id"] for e in found["entry"]] == [third, first]  # newest first
    assert found["entry"][0]["fullUrl"] == f"{PUBLIC}/fhir/DiagnosticReport/{third}"
    assert found["link"][0]["url"].startswith(f"{PUBLIC}/fhir/DiagnosticReport?patient=")
    for params, ids in (
        ({"subject": "p2"}, [second]),
        ({"subject": f"{PUBLIC}/fhir/Patient/p2"}, [second]),
        ({"identifier": f"https://skinscreen.dev/fhir/sid/case-id|{first}"}, [first]),
        ({"identifier": first}, [first]),
        ({"_id": f"{first},{second}"}, [second, first]),
        ({"status": "preliminary", "patient": "p2"}, [second]),
        ({"status": "final", "patient": "p2"}, []),  # nobody reviewed it yet
        ({"status": "cancelled"}, []),
        ({"code": "https://skinscreen.dev/fhir/CodeSystem/skin-condition|"
                  "skin-screening-report", "subject": "p2"}, [second]),
        ({"date": "ge2000-01-01", "patient": "p2"}, [second]),
        ({"date": "lt2000", "patient": "p2"}, []),
        ({"_lastUpdated": "gt2000-01-01T00:00:00Z", "patient": "p2"}, [second]),
    ):  # fmt: skip
        body = client.get("/fhir/DiagnosticReport", params=params).json()
        assert [e["resource"]["id"] for e in body.get("entry", [])] == ids, params
        assert body["total"] == len(ids)
    bad = client.get("/fhir/DiagnosticReport", params={"date": "yesterday"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    strict = client.get("/fhir/DiagnosticReport?nope=1", headers={"prefer": "handling=strict"})
    assert strict.status_code == 400
    lenient = client.get("/fhir/DiagnosticReport?nope=1&patient=p2").json()
    assert lenient["total"] == 1 and "nope" not in lenient["link"][0]["url"]


def test_paging_with_next_links_and_include(client: TestClient[Any], shared_dir: Path) -> None:
    made = [diagnose(client, patient("p9", "MRN-9")) for _ in range(3)]
    seen: list[str] = []
    url: str | None = "/fhir/DiagnosticReport?patient=p9&_count=1&_include=DiagnosticReport:subject"
    while url:
        page = client.get(url.removeprefix(PUBLIC)).json()
        assert_valid_r4(page, shared_dir)
        assert page["total"] == 3
        matches = [e for e in page["entry"] if e["search"]["mode"] == "match"]
        (included,) = [e for e in page["entry"] if e["search"]["mode"] == "include"]
        assert included["resource"]["id"] == "p9"
        assert included["fullUrl"] == f"{PUBLIC}/fhir/Patient/p9"
        seen += [e["resource"]["id"] for e in matches]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        if url:
            assert url.startswith(f"{PUBLIC}/fhir/DiagnosticReport?")
            assert parse_qs(urlsplit(url).query)["_include"] == ["DiagnosticReport:subject"]
    assert seen == made[::-1]
    counted = client.get("/fhir/DiagnosticReport?patient=p9&_count=0").json()
    assert counted["total"] == 3 and "entry" not in counted
    assert client.get("/fhir/DiagnosticReport?_count=x").status_code == 400


def test_patients_seen_are_searchable_and_readable(
    client: TestClient[Any], shared_dir: Path
) -> None:
    diagnose(client, patient("p1", "MRN-1"))
    diagnose(client, {"resourceType": "Patient", "identifier": [{"value": "walk-in-7"}]})
    diagnose(client)  # no patient: nothing to list
    people = client.get("/fhir/Patient").json()
    assert_valid_r4(people, shared_dir)
    assert people["total"] == 2
    derived = next(e["resource"] for e in people["entry"] if e["resource"]["id"] != "p1")
    assert derived["id"].startswith("p-") and derived["identifier"] == [{"value": "walk-in-7"}]
    by_mrn = client.get("/fhir/Patient", params={"identifier": "urn:oid:1.2.3|MRN-1"}).json()
    assert [e["resource"]["id"] for e in by_mrn["entry"]] == ["p1"]
    read = client.get("/fhir/Patient/p1")
    assert read.status_code == 200 and read.json()["gender"] == "female"
    assert_valid_r4(read.json(), shared_dir)
    derived_reports = client.get("/fhir/DiagnosticReport", params={"patient": derived["id"]})
    assert derived_reports.json()["total"] == 1
    missing = client.get("/fhir/Patient/nobody")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


def test_async_status_is_a_batch_response_then_delete_makes_it_404(
    client: TestClient[Any], shared_dir: Path
) -> None:
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    body = json.dumps({"resourceType": "Parameters",
                       "parameter": [{"name": "image", "valueAttachment": image}]})  # fmt: skip
    accepted = client.post(DIAGNOSE, content=body, headers={**FHIR, "prefer": "respond-async"})
    assert accepted.status_code == 202 and "location" not in accepted.headers
    status_url = accepted.headers["content-location"]
    assert status_url.startswith(f"{PUBLIC}/fhir/jobs/")
    assert f"<{PUBLIC}/api/v1/jobs/" in accepted.headers["link"]
    deadline = time.monotonic() + 30
    while (polled := client.get(status_url.removeprefix(PUBLIC))).status_code == 202:
        assert time.monotonic() < deadline
    assert polled.status_code == 200
    bundle = polled.json()
    assert_valid_r4(bundle, shared_dir)
    (entry,) = bundle["entry"]
    assert bundle["type"] == "batch-response" and entry["response"]["status"] == "201 Created"
    report_id = entry["resource"]["id"]
    assert entry["response"]["location"] == f"{PUBLIC}/fhir/DiagnosticReport/{report_id}"
    assert client.delete(status_url.removeprefix(PUBLIC)).status_code == 202
    assert client.get(status_url.removeprefix(PUBLIC)).status_code == 404
    assert client.get(f"/fhir/DiagnosticReport/{report_id}").status_code == 404


def test_cancelled_async_job_is_404_and_failures_are_outcomes(tmp_path: Path) -> None:
    narrator = ScriptedNarrator(chunks=1000, delay_s=0.02)
    services = fake_services(tmp_path, fake_deps(narrator=narrator, outputs=[FhirOutput()]))
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    body = json.dumps({"resourceType": "Parameters",
                       "parameter": [{"name": "image", "valueAttachment": image}]})  # fmt: skip
    with TestClient(create_app(services.settings, services=services)) as client:
        accepted = client.post(DIAGNOSE, content=body, headers={**FHIR, "prefer": "respond-async"})
        path = urlsplit(accepted.headers["content-location"]).path
        assert client.delete(path).status_code == 202
        gone = client.get(path)
        assert gone.status_code == 404 and gone.json()["resourceType"] == "OperationOutcome"


def _async(client: TestClient[Any], query: str = "") -> dict[str, Any]:
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    body = json.dumps({"resourceType": "Parameters",
                       "parameter": [{"name": "image", "valueAttachment": image}]})  # fmt: skip
    accepted = client.post(
        DIAGNOSE + query, content=body, headers={**FHIR, "prefer": "respond-async"}
    )
    assert accepted.status_code == 202, accepted.text
    path = urlsplit(accepted.headers["content-location"]).path
    deadline = time.monotonic() + 30
    while (polled := client.get(path)).status_code == 202:
        assert time.monotonic() < deadline
    assert polled.status_code == 200
    bundle: dict[str, Any] = polled.json()
    return bundle


def test_async_bundle_output_and_a_failed_case(tmp_path: Path, shared_dir: Path) -> None:
    class Exploding(FixedScreener):
        def screen(self, image: Any) -> Any:
            raise RuntimeError("secret internals")

    ok = fake_services(tmp_path / "ok", fake_deps(outputs=[FhirOutput()]))
    with TestClient(create_app(ok.settings, services=ok)) as client:
        bundle = _async(client, "?output=bundle")
        assert_valid_r4(bundle, shared_dir)
        (entry,) = bundle["entry"]
        assert entry["response"] == {"status": "200 OK"}
        assert entry["resource"]["type"] == "transaction"
    failing = fake_services(tmp_path / "bad", fake_deps(screener=Exploding()))
    with TestClient(create_app(failing.settings, services=failing)) as client:
        bundle = _async(client)
        assert_valid_r4(bundle, shared_dir)
        (entry,) = bundle["entry"]
        assert entry["response"]["status"].startswith("500")
        outcome = entry["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome" and "resource" not in entry
        assert "secret" not in json.dumps(bundle)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/fhir/metadata?_format=xml", {}),
        ("/fhir/metadata?_format=application/fhir%2Bxml", {}),
        ("/fhir/DiagnosticReport?_format=xml", {}),
        ("/fhir/metadata", {"accept": "application/fhir+json; fhirVersion=3.0"}),
        ("/fhir/Patient", {"accept": "application/fhir+xml"}),
    ],
)
def test_xml_and_other_fhir_versions_are_406(
    client: TestClient[Any], path: str, headers: dict[str, str]
) -> None:
    answer = client.get(path, headers=headers)
    assert answer.status_code == 406
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_json_formats_and_r4_are_served(client: TestClient[Any], shared_dir: Path) -> None:
    for path, headers in (
        ("/fhir/metadata?_format=json", {}),
        ("/fhir/metadata", {"accept": "application/fhir+json; fhirVersion=4.0"}),
        ("/fhir/metadata", {"accept": "application/fhir+xml, application/fhir+json"}),
    ):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, (path, headers)
        assert_valid_r4(answer.json(), shared_dir)


def test_conformance_resources_are_served_at_their_canonicals(
    client: TestClient[Any], shared_dir: Path
) -> None:
    statement = client.get("/fhir/metadata").json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "operation" not in statement["rest"][0]  # no system-level $diagnose
    system_level = client.post("/fhir/$diagnose", content=b"{}", headers=FHIR)
    assert system_level.status_code == 404
    assert system_level.json()["resourceType"] == "OperationOutcome"
    report = resources["DiagnosticReport"]
    assert {p["name"] for p in report["searchParam"]} >= {
        "subject", "patient", "identifier", "status", "date", "code", "_lastUpdated"
    }  # fmt: skip
    assert report["searchInclude"] == ["DiagnosticReport:subject", "DiagnosticReport:patient"]
    assert {p["name"] for p in resources["Patient"]["searchParam"]} == {"_id", "identifier"}
    assert "interaction" not in resources["Observation"]  # contained, not addressable
    canonical = report["operation"][0]["definition"]
    assert canonical == "https://skinscreen.dev/fhir/OperationDefinition/skin-diagnose"
    definition = client.get("/fhir/OperationDefinition/skin-diagnose").json()
    assert definition["url"] == canonical
    image = next(p for p in definition["parameter"] if p["name"] == "image")
    assert {e["valueUri"] for e in image["extension"]} == {
        "Attachment", "Media", "DocumentReference", "Binary"
    }  # fmt: skip
    code_system = client.get("/fhir/CodeSystem/skin-condition").json()
    assert code_system["url"] == "https://skinscreen.dev/fhir/CodeSystem/skin-condition"
    for resource in (statement, definition, code_system):
        assert_valid_r4(resource, shared_dir)
    unrouted = client.get("/fhir/Observation?subject=Patient/p1")
    assert unrouted.status_code == 404 and unrouted.json()["resourceType"] == "OperationOutcome"
