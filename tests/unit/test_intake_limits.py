"""The intake's strict parsers and limits: the same refusal whichever door a value came through."""

from __future__ import annotations

import asyncio
import base64
from datetime import date
from typing import Any

import pytest
from PIL import Image

from service import errors
from service.dicom import decode
from service.dicom.patient import COPIED_KEYWORDS
from service.fhir_server import FhirServer
from service.intake.cases import Intake, build_case, case_from_fields
from service.intake.fhir_case import case_from_fhir
from service.intake.limits import Limits, parse_age, parse_birth_date, text_problem
from service.pipeline.case import DICOM_MEDIA_TYPE, UploadOrigin
from service.pipeline.domain import Patient
from service.settings import Settings
from tests.dicom_factory import vl_photo
from tests.support.factories import jpeg

LIMITS = Limits()
PHOTO = Image.new("RGB", (64, 64), (190, 140, 120))
TODAY = date(2026, 12, 2)


def rest(**fields: str) -> Intake:
    return case_from_fields(jpeg(), "image/jpeg", fields, None, LIMITS)


def fhir_with_patient(**patient: Any) -> Intake:
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "image", "valueAttachment": image},
            {"name": "subject", "resource": {"resourceType": "Patient", **patient}},
        ],
    }
    return asyncio.run(case_from_fhir(body, {}, None, LIMITS, FhirServer(Settings())))


def stow(**header: str) -> Intake:
    values = {"PatientName": "Doe^Jane", "PatientID": "P1", **header}
    return build_case(
        vl_photo(PHOTO, patient=values),
        DICOM_MEDIA_TYPE,
        patient=Patient(),
        history=None,
        language="en",
        origin=UploadOrigin(),
        limits=LIMITS,
    )


@pytest.mark.parametrize(("text", "years"), [("0", 0), ("7", 7), ("045", 45), ("130", 130)])
def test_ages_are_one_to_three_ascii_digits(text: str, years: int) -> None:
    assert parse_age(text) == years


@pytest.mark.parametrize(
    "text",
    ["1_0_0", "١٢", "²", "12.0", "-1", "+5", "0x10", "1e2", " 12", "131", "9" * 5000, "", "٣"],
)
def test_anything_else_is_not_an_age(text: str) -> None:
    with pytest.raises(ValueError):
        parse_age(text)


def test_a_rest_age_with_underscores_is_refused_not_read_as_100() -> None:
    with pytest.raises(errors.Unprocessable) as caught:
        rest(patient_age="1_0_0")
    assert caught.value.expression == ["patient_age"]
    assert rest(patient_age=" 54 ").case.patient.age == 54


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Kim\x00Minjun", "control"),
        ("Kim\x1b[31m", "control"),
        ("Kim\u0085Lee", "control"),
        ("Kim\ud800", "surrogate"),
        ("x" * 201, "at most 200"),
    ],
)
def test_text_problems(value: str, problem: str) -> None:
    assert problem in (text_problem(value, 200) or "")
    with pytest.raises(errors.Unprocessable) as caught:
        rest(patient_name=value)
    assert caught.value.expression == ["patient_name"]


def test_history_keeps_line_breaks_and_refuses_other_controls() -> None:
    assert rest(history="itchy\n\tsince May\r\n").case.history == "itchy\n\tsince May"
    with pytest.raises(errors.Unprocessable) as caught:
        rest(history="itchy\x07")
    assert caught.value.expression == ["history"]


@pytest.mark.parametrize("text", ["1971-05-02", "1971-05", "1971", "1900-01-01", "2026-12-02"])
def test_plausible_birth_dates(text: str) -> None:
    assert parse_birth_date(text, TODAY).year >= 1900


@pytest.mark.parametrize(
    "text", ["2199", "2026-12-03", "2027-01", "1899-12-31", "1800", "2020-02-30", "1971-13", "x"]
)
def test_implausible_birth_dates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_birth_date(text, TODAY)


@pytest.mark.parametrize("birth_date", ["2199-01-01", "2199", "1800-03-04", "1899-12"])
def test_fhir_birth_dates_outside_1900_to_today_are_refused(birth_date: str) -> None:
    with pytest.raises(errors.Unprocessable) as caught:
        fhir_with_patient(birthDate=birth_date)
    assert caught.value.expression == ["patient_birth_date"]
    assert fhir_with_patient(birthDate="1971-05-02").case.patient.age is not None


def test_fhir_identifier_and_references_are_bounded() -> None:
    with pytest.raises(errors.Unprocessable) as caught:
        fhir_with_patient(identifier=[{"value": "M" * 65}])
    assert caught.value.expression == ["patient_identifier"]
    assert fhir_with_patient(identifier=[{"value": "M" * 64}]).case.patient.identifier


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("PatientName", "A" * 20_000),
        ("PatientName", "Kim^" + "B" * 61),  # 65 characters in the alphabetic group
        ("PatientName", "Doe^Jane=" + "김" * 65),  # the ideographic group is too long
        ("PatientName", "a=b=c=d"),  # four component groups
        ("PatientName", "^".join(["ab"] * 6)),  # six components
        ("PatientID", "P" * 65),
        ("StudyDescription", "d" * 65),
        ("IssuerOfPatientID", "I" * 65),
        ("PatientSex", "F" * 17),
        ("PatientBirthDate", "18000101"),
        ("PatientBirthDate", "21990101"),
        ("PatientAge", "999Y"),
    ],
)
def test_dicom_header_values_beyond_their_vr_or_plausibility_are_refused(
    keyword: str, value: str
) -> None:
    with pytest.raises(errors.Unprocessable):
        stow(**{keyword: value})
    upload = vl_photo(PHOTO, patient={"PatientName": "Doe^Jane", keyword: value})
    with pytest.raises(errors.Unprocessable):  # the REST door refuses it the same way
        case_from_fields(upload, DICOM_MEDIA_TYPE, {"patient_name": "Override"}, None, LIMITS)


def test_dicom_names_at_the_limit_are_accepted() -> None:
    name = "K" * 30 + "^" + "M" * 33 + "=" + "김" * 10 + "^" + "민준" + "=" + "ㄱ" * 64
    assert stow(PatientName=name).case.patient.name == "M" * 33 + " " + "K" * 30


def test_the_checked_keywords_are_those_a_report_copies() -> None:
    assert COPIED_KEYWORDS == decode.PATIENT_KEYWORDS + decode.STUDY_KEYWORDS
