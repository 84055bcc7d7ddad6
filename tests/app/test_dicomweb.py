"""DICOMweb on the in-process app: STOW-RS answers, QIDO-RS and WADO-RS of every stored object
(source photo, Encapsulated PDF, SR), path UIDs enforced, owner-scoped reads."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset

from service.app import create_app
from service.outputs.dicom import DicomOutput
from service.outputs.fhir import FhirOutput
from service.settings import Settings
from tests import dicom_factory as factory
from tests.support.clients import write_clients
from tests.support.factories import fake_deps, fake_services

BASE = "https://gateway.example/skin"
SCOPES = ["system/DiagnosticReport.cruds", "system/ImagingStudy.cr"]
ENCAPSULATED_PDF, COMPREHENSIVE_SR = (
    "1.2.840.10008.5.1.4.1.1.104.1",
    "1.2.840.10008.5.1.4.1.1.88.33",
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    write_clients(
        tmp_path / "clients.json", {"clinic-a": (SCOPES, "key-a"), "clinic-b": (SCOPES, "key-b")}
    )
    settings = Settings(
        data_dir=tmp_path, auth="on", public_base_url=BASE, rate_limit_per_minute=10_000
    )
    services = fake_services(tmp_path, fake_deps(outputs=[FhirOutput(), DicomOutput()]), settings)
    with TestClient(create_app(settings, services=services)) as test_client:
        yield test_client


A, B = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}


def stow(client: TestClient[Any], *instances: bytes, headers: dict[str, str] = A) -> Any:
    body = b"".join(
        b"--b\r\nContent-Type: application/dicom\r\n\r\n" + i + b"\r\n" for i in instances
    )
    return client.post(
        "/dicomweb/studies",
        content=body + b"--b--\r\n",
        headers={
            "content-type": 'multipart/related; type="application/dicom"; boundary=b',
            **headers,
        },
    )


def wait_completed(client: TestClient[Any], response: Any) -> None:
    job = response.headers["link"].split("/api/v1/jobs/")[1].split("/")[0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/jobs/{job}", headers=A).json()["status"]
        if status in ("completed", "failed"):
            assert status == "completed"
            return
        time.sleep(0.05)
    raise AssertionError("the job did not finish in 30 s")


def parts(response: Any) -> list[Dataset]:
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = message_from_bytes(head + response.content)
    return [dcmread(io.BytesIO(p.get_payload(decode=True))) for p in message.get_payload()]


@pytest.fixture
def photo() -> Dataset:
    return factory.photo_dataset(Image.new("RGB", (64, 48), (190, 140, 120)))


def test_stow_qido_wado_of_source_pdf_and_sr(client: TestClient[Any], photo: Dataset) -> None:
    stored = stow(client, factory.to_bytes(photo))
    assert stored.status_code == 200, stored.text
    body = stored.json()
    study, series = photo.StudyInstanceUID, photo.SeriesInstanceUID
    assert body["00081190"]["Value"] == [f"{BASE}/dicomweb/studies/{study}"]
    item = body["00081199"]["Value"][0]
    assert item["00081190"]["Value"] == [
        f"{BASE}/dicomweb/studies/{study}/series/{series}/instances/{photo.SOPInstanceUID}"
    ]
    assert "00081196" not in item  # a complete instance: no warning
    wait_completed(client, stored)

    studies = client.get("/dicomweb/studies", params={"PatientID": "KR-20240001"}, headers=A)
    assert studies.status_code == 200
    assert studies.headers["content-type"].startswith("application/dicom+json")
    [found] = studies.json()
    assert found["0020000D"]["Value"] == [study]
    assert found["00080061"]["Value"] == ["DOC", "SR", "XC"]
    assert found["00201208"]["Value"] == [3] and found["00201206"]["Value"] == [3]
    assert found["00081190"]["Value"] == [f"{BASE}/dicomweb/studies/{study}"]
    assert client.get("/dicomweb/studies?ModalitiesInStudy=SR", headers=A).json()
    assert client.get("/dicomweb/studies?ModalitiesInStudy=CT", headers=A).json() == []
    assert client.get("/dicomweb/studies?StudyDate=20250101-20250331", headers=A).json()
    assert client.get("/dicomweb/studies?StudyDate=20260101-", headers=A).json() == []
    assert client.get("/dicomweb/studies?PatientName=홍*", headers=A).json()

    series_list = client.get(f"/dicomweb/studies/{study}/series", headers=A).json()
    assert sorted(s["00080060"]["Value"][0] for s in series_list) == ["DOC", "SR", "XC"]
    sr_search = client.get(
        "/dicomweb/instances", params={"SOPClassUID": COMPREHENSIVE_SR}, headers=A
    ).json()
    assert len(sr_search) == 1
    paged = client.get(f"/dicomweb/studies/{study}/instances?limit=2&offset=1", headers=A).json()
    assert len(paged) == 2

    everything = parts(client.get(f"/dicomweb/studies/{study}", headers=A))
    classes = sorted(ds.SOPClassUID for ds in everything)
    assert classes == sorted([photo.SOPClassUID, ENCAPSULATED_PDF, COMPREHENSIVE_SR])
    sr_item = sr_search[0]
    sr_url = sr_item["00081190"]["Value"][0].removeprefix(BASE)
    [sr] = parts(client.get(sr_url, headers=A))
    assert sr.SOPClassUID == COMPREHENSIVE_SR and sr.StudyInstanceUID == study
    metadata = client.get(sr_url + "/metadata", headers=A).json()
    assert metadata[0]["00080018"]["Value"] == [sr.SOPInstanceUID]
    assert "7FE00010" not in metadata[0]


def test_path_uids_and_owners_are_enforced(client: TestClient[Any], photo: Dataset) -> None:
    stored = stow(client, factory.to_bytes(photo))
    wait_completed(client, stored)
    study, series, sop = photo.StudyInstanceUID, photo.SeriesInstanceUID, photo.SOPInstanceUID
    good = f"/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    assert client.get(good, headers=A).status_code == 200
    other = "1.2.3.4.5"
    for path in (
        f"/dicomweb/studies/{other}/series/{series}/instances/{sop}",
        f"/dicomweb/studies/{study}/series/{other}/instances/{sop}",
        f"/dicomweb/studies/{other}",
        f"/dicomweb/studies/{study}/series/{other}/metadata",
    ):
        assert client.get(path, headers=A).status_code == 404, path
    assert client.get(good, headers=B).status_code == 404  # another clinic's instance
    assert client.get(f"/dicomweb/studies/{study}", headers=B).status_code == 404
    assert client.get("/dicomweb/studies", headers=B).json() == []
    assert client.get("/dicomweb/studies?limit=x", headers=A).status_code == 400


def test_specific_failure_reasons_and_iod_warnings(client: TestClient[Any]) -> None:
    image = Image.new("RGB", (64, 48), (190, 140, 120))
    incomplete = factory.photo_dataset(image, complete=False)
    mpeg = factory.photo_dataset(image, jpeg=True)  # encapsulated pixel data
    mpeg.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 Main Profile
    answer = stow(client, factory.to_bytes(incomplete), factory.to_bytes(mpeg), factory.text_sr())
    assert answer.status_code == 202
    body = answer.json()
    [stored] = body["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [incomplete.SOPInstanceUID]
    assert stored["00081196"]["Value"] == [0xB007]
    assert "AcquisitionContextSequence" in answer.headers["warning"]
    reasons = {
        f["00081155"]["Value"][0]: f["00081197"]["Value"][0] for f in body["00081198"]["Value"]
    }
    assert reasons[mpeg.SOPInstanceUID] == 0xC122
    assert len(reasons) == 2 and 0x0122 in reasons.values()
