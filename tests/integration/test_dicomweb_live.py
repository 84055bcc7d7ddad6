"""DICOMweb between real servers, spoken by dicomweb-client: QIDO-RS finds the study of a stored
photo, WADO-RS returns its SR and Encapsulated PDF (SR content checked against the report), and
the report objects pushed by one skinscreen's STOW-RS client arrive at a second one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset

from fhir_mappings.codes import SNOMED, verified_codes
from tests import dicom_factory as factory
from tests.support.clients import write_clients
from tests.support.live_server import LiveServer, start_server, stop_server

SR_CLASS, PDF_CLASS = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.104.1"
PACS_KEY = "pacs-key-1"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    """(sender, receiver): the sender pushes every report to the receiver, which wants a key."""
    receiver_dir = tmp_path_factory.mktemp("receiver")
    scopes = ["system/ImagingStudy.cr", "system/DiagnosticReport.cr"]
    clients = write_clients(receiver_dir / "clients.json", {"ai-gateway": (scopes, PACS_KEY)})
    receiver = start_server(
        receiver_dir,
        {"SKINSCREEN_AUTH": "on", "SKINSCREEN_CLIENTS_FILE": str(clients)},
        name="receiver",
    )
    sender = start_server(
        tmp_path_factory.mktemp("sender"),
        {
            "SKINSCREEN_DICOM_PUSH_URL": f"{receiver.url}/dicomweb",
            "SKINSCREEN_DICOM_PUSH_TOKEN": PACS_KEY,
            "SKINSCREEN_DICOM_PUSH_BACKOFF_S": "0.2",
        },
        name="sender",
    )
    yield sender, receiver
    stop_server(sender)
    stop_server(receiver)


@pytest.fixture(scope="module")
def stored(
    servers: tuple[LiveServer, LiveServer], skin6_val_images: dict[str, list[Path]]
) -> tuple[Dataset, dict[str, Any]]:
    """A photo STOWed into the sender and its finished report JSON."""
    sender, _ = servers
    photo = Image.open(skin6_val_images["Acne"][2]).convert("RGB")
    patient = {**factory.KOREAN_PATIENT, "PatientName": "김^민준", "PatientID": "KR-77"}
    ds = factory.photo_dataset(photo, patient=patient)
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + factory.to_bytes(ds)
    answer = httpx.post(
        f"{sender.url}/dicomweb/studies",
        content=body + b"\r\n--b--\r\n",
        headers={"content-type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert answer.status_code == 200, answer.text
    url = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    assert url.startswith(f"{sender.url}/dicomweb/studies/{ds.StudyInstanceUID}/series/")
    job_id = answer.headers["link"].split("/api/v1/jobs/")[1].split("/")[0]
    deadline = time.monotonic() + 120
    while httpx.get(f"{sender.url}/api/v1/jobs/{job_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "the STOW job did not complete"
        time.sleep(0.3)
    return ds, httpx.get(f"{sender.url}/api/v1/reports/{job_id}.json").json()


def _items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _code(item: Dataset, attribute: str = "ConceptNameCodeSequence") -> tuple[str, str]:
    code = item[attribute][0]
    return str(code.CodeValue), str(code.CodingSchemeDesignator)


def test_qido_finds_the_study_and_wado_returns_sr_and_pdf(
    servers: tuple[LiveServer, LiveServer], stored: tuple[Dataset, dict[str, Any]]
) -> None:
    sender, _ = servers
    photo, report = stored
    client = DICOMwebClient(url=f"{sender.url}/dicomweb")
    [study] = client.search_for_studies(search_filters={"PatientID": "KR-77"})
    assert study["0020000D"]["Value"] == [photo.StudyInstanceUID]
    assert set(study["00080061"]["Value"]) == {"XC", "DOC", "SR"}
    instances = client.search_for_instances(study_instance_uid=photo.StudyInstanceUID)
    by_class = {i["00080016"]["Value"][0]: i for i in instances}
    assert set(by_class) == {photo.SOPClassUID, SR_CLASS, PDF_CLASS}

    def retrieve(sop_class: str) -> Dataset:
        found = by_class[sop_class]
        return client.retrieve_instance(
            photo.StudyInstanceUID, found["0020000E"]["Value"][0], found["00080018"]["Value"][0]
        )

    pdf = retrieve(PDF_CLASS)
    assert bytes(pdf.EncapsulatedDocument).startswith(b"%PDF-")
    sr = retrieve(SR_CLASS)
    assert str(sr.PatientName) == "김^민준" and sr.StudyInstanceUID == photo.StudyInstanceUID
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    items = list(_items(sr))
    classification = report["classification"]
    assert classification["status"] == "ok", "the Acne val photo is expected to pass the gate"
    label, model = classification["label"], classification["model"]
    findings = [i for i in items if _code(i) == ("121071", "DCM")]
    top = findings[0]
    snomed = [code for system, code, *_ in verified_codes(label) if system == SNOMED]
    expected_code = (snomed[0], "SCT") if snomed else (label.lower(), "99SKSCR")
    assert _code(top, "ConceptCodeSequence") == expected_code
    assert all(_code(f, "ConceptCodeSequence")[1] == "99SKSCR" for f in findings[1:])
    certainty = next(i for i in items if _code(i) == ("111012", "DCM"))
    assert _code(certainty, "ConceptCodeSequence") == ("415684004", "SCT")  # Suspected
    probabilities = [
        float(i.MeasuredValueSequence[0].NumericValue)
        for i in items
        if _code(i) == ("122157", "DCM")
    ]
    assert probabilities[0] == pytest.approx(classification["confidence"], abs=1e-5)
    assert len(probabilities) == 6
    texts = {_code(i): str(i.TextValue) for i in items if i.ValueType == "TEXT"}
    assert texts[("111001", "DCM")] == model["name"]
    assert texts[("111003", "DCM")] == model["version"]
    assert texts[("111002", "DCM")] == f"sha256={model['sha256']}"
    referenced = {
        str(ref.ReferencedSOPInstanceUID)
        for i in items
        if i.ValueType == "IMAGE"
        for ref in i.ReferencedSOPSequence
    }
    assert referenced == {photo.SOPInstanceUID}
    triage = next(i for i in items if _code(i) == ("triage-level", "99SKSCR"))
    assert _code(triage, "ConceptCodeSequence")[0] == report["referral"]["level"]


def test_reports_are_pushed_to_the_second_server(
    servers: tuple[LiveServer, LiveServer], stored: tuple[Dataset, dict[str, Any]]
) -> None:
    sender, receiver = servers
    photo, _ = stored
    pacs = DICOMwebClient(
        url=f"{receiver.url}/dicomweb", headers={"Authorization": f"Bearer {PACS_KEY}"}
    )
    assert httpx.get(f"{receiver.url}/dicomweb/studies").status_code == 401
    deadline, found = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(found) < 2:
        found = pacs.search_for_instances(study_instance_uid=photo.StudyInstanceUID)
        time.sleep(0.3)
    classes = sorted(i["00080016"]["Value"][0] for i in found)
    assert classes == sorted([PDF_CLASS, SR_CLASS])  # the report objects, not the photo
    for item in found:
        retrieved = pacs.retrieve_instance(
            photo.StudyInstanceUID, item["0020000E"]["Value"][0], item["00080018"]["Value"][0]
        )
        assert retrieved.PatientID == "KR-77"
    [study] = pacs.search_for_studies(search_filters={"StudyInstanceUID": photo.StudyInstanceUID})
    assert study["00201208"]["Value"] == [2]
    own = DICOMwebClient(url=f"{sender.url}/dicomweb")
    sr_uid = next(i for i in found if i["00080016"]["Value"][0] == SR_CLASS)["00080018"]
    assert own.search_for_instances(search_filters={"SOPInstanceUID": sr_uid["Value"][0]})
