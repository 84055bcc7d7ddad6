"""The patient link survives into the FHIR report whatever door the case came through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from service.app import create_app
from service.bootstrap import Services
from service.outputs.common import DICOM_PATIENT_ID
from service.outputs.dicom import DicomOutput
from service.outputs.fhir import FhirOutput
from tests.dicom_factory import vl_photo
from tests.support.factories import fake_deps, fake_services
from tests.support.fhir_checks import assert_valid_r4

FHIR = "application/fhir+json"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    services: Services = fake_services(tmp_path, fake_deps(outputs=[FhirOutput(), DicomOutput()]))
    with TestClient(create_app(services.settings, services=services)) as client:
        yield client


@pytest.mark.parametrize(
    ("issuer", "system"),
    [
        ("", DICOM_PATIENT_ID),
        ("SEOUL-GH", f"{DICOM_PATIENT_ID}/SEOUL-GH"),
        ("urn:oid:1.2.410.200", "urn:oid:1.2.410.200"),
    ],
)
def test_a_dicom_case_links_its_patient(
    client: TestClient[Any], shared_dir: Path, issuer: str, system: str
) -> None:
    patient = {"PatientName": "Kim^Minjun", "PatientID": "P-0042", "PatientSex": "M"}
    if issuer:
        patient["IssuerOfPatientID"] = issuer
    body = vl_photo(Image.new("RGB", (96, 96), (190, 140, 120)), patient=patient)
    answer = client.post(
        "/api/v1/diagnose", content=body, headers={"content-type": "application/dicom"}
    )
    assert answer.status_code == 200, answer.text
    case_id = answer.json()["case_id"]
    report = client.get(f"/fhir/DiagnosticReport/{case_id}", headers={"accept": FHIR}).json()
    assert_valid_r4(report, shared_dir)
    subject = report["subject"]
    assert subject["identifier"] == {"system": system, "value": "P-0042"}
    assert "Kim" in subject["display"] and "Minjun" in subject["display"]


def _references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            found.append(node["reference"])
        for value in node.values():
            found += _references(value)
    elif isinstance(node, list):
        for item in node:
            found += _references(item)
    return found


@pytest.mark.parametrize("inline", ["attachment", "media-with-id", "binary-with-id"])
def test_every_reference_in_a_report_resolves(client: TestClient[Any], inline: str) -> None:
    """Contained references point at contained resources; others are readable here."""
    import base64
    import json

    from tests.support.factories import jpeg

    data = base64.b64encode(jpeg()).decode()
    image: dict[str, Any] = {"name": "image"}
    if inline == "attachment":
        image["valueAttachment"] = {"contentType": "image/jpeg", "data": data}
    elif inline == "media-with-id":
        image["resource"] = {
            "resourceType": "Media",
            "id": "m1",
            "status": "completed",
            "content": {"contentType": "image/jpeg", "data": data},
        }
    else:
        image["resource"] = {
            "resourceType": "Binary",
            "id": "b1",
            "contentType": "image/jpeg",
            "data": data,
        }
    answer = client.post(
        "/fhir/DiagnosticReport/$diagnose",
        content=json.dumps({"resourceType": "Parameters", "parameter": [image]}),
        headers={"content-type": FHIR, "accept": FHIR},
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    contained = {c["id"] for c in report.get("contained", [])}
    for reference in _references(report):
        if reference.startswith("#"):
            assert reference == "#" or reference[1:] in contained, reference
        else:
            read = client.get(f"/fhir/{reference}", headers={"accept": FHIR})
            assert read.status_code == 200, reference
    (media,) = [c for c in report["contained"] if c["resourceType"] == "Media"]
    photo = client.get(f"/fhir/{media['content']['url']}", headers={"accept": "image/jpeg"})
    assert photo.status_code == 200 and photo.content == jpeg(), "the photo is retrievable"
    as_binary = client.get(f"/fhir/{media['content']['url']}", headers={"accept": FHIR}).json()
    assert as_binary["contentType"] == "image/jpeg"
    assert base64.b64decode(as_binary["data"]) == jpeg()
    for form in report["presentedForm"]:
        if "url" in form:
            assert client.get(f"/fhir/{form['url']}", headers={"accept": FHIR}).status_code == 200
