"""A case is a value: it survives a trip through JSON and the store, and rebuilds exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from service.intake.cases import Limits, build_case, decode_case
from service.pipeline.case import (
    DICOM_MEDIA_TYPE,
    Case,
    DicomOrigin,
    FhirOrigin,
    UploadOrigin,
    origin_from_json,
)
from service.pipeline.domain import Patient
from service.store import SqliteDb
from tests.dicom_factory import vl_photo
from tests.support.factories import intake, jpeg

PHOTO = Image.new("RGB", (80, 64), (190, 140, 120))


def roundtrip(case: Case) -> Case:
    """Through JSON text, as a store writes it."""
    return Case.from_record(json.loads(json.dumps(case.record())), bytes(case.data))


def fhir_case() -> Case:
    origin = FhirOrigin(
        output="bundle",
        subject_reference="Patient/123",
        subject_resource={"resourceType": "Patient", "id": "123", "name": [{"text": "홍길동"}]},
        server_patient="Patient/123",
    )
    return build_case(
        jpeg(),
        "image/jpeg",
        patient=Patient(name="홍길동", age=44, sex="female", birth_date="1980-02-15"),
        history="itchy for two weeks",
        language="ko",
        origin=origin,
        limits=Limits(),
        fhir_reference="Media/example",
    ).case


def dicom_case() -> Case:
    data = vl_photo(PHOTO)
    return build_case(
        data,
        DICOM_MEDIA_TYPE,
        patient=Patient(),
        history=None,
        language="vi",
        origin=UploadOrigin(),
        limits=Limits(),
    ).case


@pytest.mark.parametrize("make", [lambda: intake(patient_name="Kim").case, fhir_case, dicom_case])
def test_record_roundtrip_is_equal(make: object) -> None:
    case = make()  # type: ignore[operator]
    again = roundtrip(case)
    assert again == case
    assert again.record() == case.record()
    assert type(again.origin) is type(case.origin)


def test_a_dicom_case_carries_what_the_report_instance_copies() -> None:
    case = dicom_case()
    origin = case.origin
    assert isinstance(origin, DicomOrigin)
    assert origin.sop_instance_uid and origin.study_instance_uid and origin.sop_class_uid
    assert origin.modules["PatientName"] == "홍^길동"  # decoded with the source charset
    assert origin.modules["PatientID"] == "KR-20240001"
    assert case.patient.name and case.patient.identifier == "KR-20240001"
    assert case.source.dicom["SOPInstanceUID"] == origin.sop_instance_uid


@pytest.mark.parametrize("make", [lambda: intake().case, dicom_case])
def test_stored_case_rebuilds_the_same_pixels(make: object, tmp_path: Path) -> None:
    case = make()  # type: ignore[operator]
    store = SqliteDb(tmp_path / "s.db")
    store.create_job(case.case_id, "diagnose", {}, (case.record(), case.data))
    store.close()
    stored = SqliteDb(tmp_path / "s.db").get_case(case.case_id)
    assert stored is not None
    rebuilt = Case.from_record(*stored)
    assert rebuilt == case and rebuilt.data == case.data
    first, second = decode_case(case, Limits()), decode_case(rebuilt, Limits())
    assert first.size == second.size
    assert ImageChops.difference(first, second).getbbox() is None


def test_unknown_records_are_refused() -> None:
    record = intake().case.record()
    with pytest.raises(ValueError, match="version"):
        Case.from_record({**record, "version": 99}, b"")
    with pytest.raises(ValueError, match="origin"):
        origin_from_json({"kind": "carrier-pigeon"})
