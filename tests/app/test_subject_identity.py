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
