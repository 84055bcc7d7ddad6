"""Two independent FHIR client libraries against a live server: fhirpy and fhirclient search
DiagnosticReport and Patient, read what they found, and page with `_count=1` + `next` links.
Every resource they get back is checked with `assert_valid_r4`."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import httpx
from fhirclient import client as fhirclient_client
from fhirclient.models.diagnosticreport import DiagnosticReport
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient

from tests.support.fhir_checks import assert_valid_r4
from tests.support.live_server import LiveServer

FHIR = "application/fhir+json"


def _diagnose(server: LiveServer, image: bytes, patient_id: str, mrn: str) -> str:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "subject",
                "resource": {
                    "resourceType": "Patient",
                    "id": patient_id,
                    "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": mrn}],
                    "gender": "male",
                },
            },
            {
                "name": "image",
                "valueAttachment": {"contentType": "image/jpeg",
                                    "data": base64.b64encode(image).decode()},
            },
        ],
    }  # fmt: skip
    answer = httpx.post(
        f"{server.url}/fhir/DiagnosticReport/$diagnose",
        content=json.dumps(body).encode(),
        headers={"content-type": FHIR},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def test_fhirpy_and_fhirclient_search_read_and_page(
    live_server: LiveServer, skin_jpeg: bytes, shared_dir: Path
) -> None:
    patient_id = f"cl-{uuid.uuid4().hex[:12]}"
    mrn = f"MRN-{uuid.uuid4().hex[:8]}"
    made = [_diagnose(live_server, skin_jpeg, patient_id, mrn) for _ in range(3)]
    base = f"{live_server.url}/fhir"

    # fhirpy: search, page through next links (`_count=1`), read.
    fhirpy = SyncFHIRClient(base)
    search = fhirpy.resources("DiagnosticReport").search(patient=f"Patient/{patient_id}")
    assert search.count() == 3
    paged = list(search.limit(1))  # iterating follows the `next` links page by page
    assert [r["id"] for r in paged] == made[::-1]
    for resource in paged:
        assert_valid_r4(resource.serialize(), shared_dir)
    read = fhirpy.reference("DiagnosticReport", made[0]).to_resource()
    assert read["subject"]["reference"] == f"Patient/{patient_id}"
    (person,) = (
        fhirpy.resources("Patient")
        .search(identifier=f"urn:oid:2.16.840.1.113883.19.5|{mrn}")
        .fetch()
    )
    assert person["id"] == patient_id
    assert_valid_r4(person.serialize(), shared_dir)

    # fhirclient (SMART): the same search, every page, and the reads.
    smart = fhirclient_client.FHIRClient(settings={"app_id": "skinscreen-tests", "api_base": base})
    pages = list(
        DiagnosticReport.where(struct={"patient": patient_id, "_count": "1"}).perform_iter(
            smart.server
        )
    )
    assert len(pages) == 3 and all(page.total == 3 for page in pages)
    assert [page.entry[0].resource.id for page in pages] == made[::-1]
    for page in pages:
        assert_valid_r4(page.as_json(), shared_dir)
    report = DiagnosticReport.read(made[1], smart.server)
    assert (
        report.status in ("final", "preliminary")
        and report.subject.reference == f"Patient/{patient_id}"
    )
    patient = Patient.read(patient_id, smart.server)
    assert patient.identifier[0].value == mrn and patient.gender == "male"
