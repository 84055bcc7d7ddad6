"""The one intake: the same limits and the same errors whichever door a case comes through."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from PIL import Image

from service import errors
from service.fhir_server import FhirServer
from service.intake.cases import (
    Intake,
    Limits,
    build_case,
    case_from_fields,
    parse_language,
)
from service.intake.fhir_case import case_from_fhir
from service.pipeline.case import DICOM_MEDIA_TYPE, DicomOrigin, FhirOrigin, UploadOrigin
from service.pipeline.domain import Patient
from service.settings import Settings
from tests.dicom_factory import vl_photo
from tests.support.factories import jpeg

LIMITS = Limits(max_name_chars=20, max_history_chars=50)
PHOTO = Image.new("RGB", (64, 64), (190, 140, 120))


def rest(**fields: str) -> Intake:
    return case_from_fields(jpeg(), "image/jpeg", fields, None, LIMITS)


def fhir(*parameters: dict[str, Any], query: dict[str, str] | None = None) -> Intake:
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "image", "valueAttachment": image}, *parameters],
    }
    server = FhirServer(Settings())
    return asyncio.run(case_from_fhir(body, query or {}, None, LIMITS, server))


def stow(patient_name: str) -> Intake:
    data = vl_photo(PHOTO, patient={"PatientName": patient_name, "PatientID": "P1"})
    return build_case(
        data,
        DICOM_MEDIA_TYPE,
        patient=Patient(),
        history=None,
        language="en",
        origin=UploadOrigin(),
        limits=LIMITS,
    )


def test_each_door_builds_its_origin() -> None:
    assert isinstance(rest().case.origin, UploadOrigin)
    assert isinstance(fhir().case.origin, FhirOrigin)
    assert isinstance(stow("Doe^Jane").case.origin, DicomOrigin)
    upload_dicom = case_from_fields(vl_photo(PHOTO), DICOM_MEDIA_TYPE, {}, None, LIMITS)
    assert isinstance(upload_dicom.case.origin, DicomOrigin)  # DICOM bytes, whichever door


def test_history_is_limited_on_every_door() -> None:
    long = "x" * 51
    with pytest.raises(errors.Unprocessable, match="history"):
        rest(history=long)
    with pytest.raises(errors.Unprocessable, match="history"):
        fhir({"name": "history", "valueString": long})
    assert fhir({"name": "history", "valueString": "  itchy  "}).case.history == "itchy"


def test_patient_name_is_limited_on_every_door() -> None:
    with pytest.raises(errors.Unprocessable) as caught:
        rest(patient_name="N" * 21)
    assert caught.value.expression == ["patient_name"]
    patient = {"resourceType": "Patient", "name": [{"text": "N" * 21}]}
    with pytest.raises(errors.Unprocessable) as caught:
        fhir({"name": "subject", "resource": patient})
    assert caught.value.expression == ["patient_name"]
    with pytest.raises(errors.Unprocessable) as caught:
        stow("N" * 21)
    assert caught.value.expression == ["patient_name"]
    assert stow("Doe^Jane").case.patient.name == "Jane Doe"


def test_one_language_error_for_every_door() -> None:
    raised = []
    for attempt in (
        lambda: rest(language="xx"),
        lambda: fhir(query={"language": "xx"}),
        lambda: fhir({"name": "language", "valueCode": "xx"}),
        lambda: parse_language("xx", None, LIMITS),
    ):
        with pytest.raises(errors.UnsupportedLanguage) as caught:
            attempt()
        raised.append((caught.value.status, caught.value.code))
    assert set(raised) == {(422, "unsupported-language")}


def test_language_negotiation() -> None:
    assert parse_language(None, "vi-VN,vi;q=0.9", LIMITS) == "vi"
    assert parse_language(" KO ", "vi", LIMITS) == "ko"
    assert parse_language(None, None, Limits(default_language="ko")) == "ko"


def test_image_limits_apply_to_fhir_and_dicom_too() -> None:
    tiny = Limits(image=Limits().image.__class__(max_pixels=1000, min_side=8))
    with pytest.raises(errors.ImageTooLarge):
        case_from_fields(jpeg(), "image/jpeg", {}, None, tiny)
    with pytest.raises(errors.ImageTooLarge):
        build_case(
            vl_photo(PHOTO),
            DICOM_MEDIA_TYPE,
            patient=Patient(),
            history=None,
            language="en",
            origin=UploadOrigin(),
            limits=tiny,
        )
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "image",
                "valueAttachment": {
                    "contentType": "image/jpeg",
                    "data": base64.b64encode(jpeg()).decode(),
                },
            }
        ],
    }
    with pytest.raises(errors.ImageTooLarge):
        asyncio.run(case_from_fhir(body, {}, None, tiny, FhirServer(Settings())))


def test_form_values_override_the_dicom_header() -> None:
    data = vl_photo(PHOTO)
    fields = {"patient_age": "33", "patient_name": "Override"}
    case = case_from_fields(data, DICOM_MEDIA_TYPE, fields, None, Limits()).case
    assert case.patient.age == 33 and case.patient.name == "Override"
    assert case.patient.identifier == "KR-20240001"  # kept from the header
