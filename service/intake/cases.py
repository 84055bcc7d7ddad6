"""The one intake: every door (REST, FHIR, STOW-RS, CLI) turns its input into a `Case` here.

Pure (no Litestar, no network): the doors parse their wire format, then call `build_case` with
the bytes, the patient, the history, the language and a typed origin. Every limit is applied
here, once, for every door — image bytes and pixels, patient name and history length — and
the language is negotiated by one function with one error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from PIL import Image

from service.dicom.decode import DicomImage, decode_dicom
from service.dicom.patient import check_copied_header
from service.dicom.preamble import zero_preamble
from service.errors import EmptyBody, Unprocessable, UnsupportedLanguage, UnsupportedMediaType
from service.images import IMAGE_MEDIA_TYPES, DecodedImage, decode_image
from service.intake.limits import (
    MAX_AGE_YEARS,
    check_patient,
    check_text_field,
    parse_age,
    text_problem,
)
from service.intake.limits import (
    Limits as Limits,  # re-exported: the doors and jobs import it from here
)
from service.pipeline.case import DICOM_MEDIA_TYPE, Case, Origin, UploadOrigin, new_case_id
from service.pipeline.domain import LANGUAGES, Patient, SourceImage
from service.report.i18n import negotiate_language

SEXES = {
    "female": "female", "f": "female", "male": "male", "m": "male",
    "other": "other", "o": "other", "unknown": "unknown", "u": "unknown",
}  # fmt: skip


@dataclass(frozen=True)
class Intake:
    """A built case and the pixels decoded while checking it (so the first run need not decode
    again; a re-run decodes `case.data` with `decode_case`)."""

    case: Case
    rgb: Image.Image


def parse_language(requested: str | None, accept_language: str | None, limits: Limits) -> str:
    """The requested language, else Accept-Language, else the default; unknown → 422."""
    wanted = (requested or "").strip().lower()
    if wanted:
        if wanted not in LANGUAGES:
            raise UnsupportedLanguage(
                f"language '{wanted[:20]}' is not supported; use one of {', '.join(LANGUAGES)}",
                expression=["language"],
                supported=list(LANGUAGES),
            )
        return wanted
    return negotiate_language(accept_language, limits.default_language)


def parse_patient_fields(fields: Mapping[str, str], limits: Limits) -> Patient:
    """Patient fields from form/query values; invalid values → 422 naming every such field."""
    errors: list[dict[str, str]] = []
    name = (fields.get("patient_name") or "").strip() or None
    if name and (problem := text_problem(name, limits.max_name_chars)):
        errors.append({"field": "patient_name", "message": problem})
        name = None
    age: int | None = None
    raw_age = (fields.get("patient_age") or "").strip()
    if raw_age:
        try:
            age = parse_age(raw_age)
        except ValueError:
            errors.append(
                {"field": "patient_age", "message": f"a whole number of years, 0–{MAX_AGE_YEARS}"}
            )
    sex = None
    raw_sex = (fields.get("patient_sex") or "").strip().lower()
    if raw_sex:
        sex = SEXES.get(raw_sex)
        if sex is None:
            errors.append(
                {"field": "patient_sex", "message": "one of female, male, other, unknown"}
            )
    if errors:
        raise Unprocessable(
            "invalid patient fields: " + ", ".join(e["field"] for e in errors),
            expression=[e["field"] for e in errors],
            errors=errors,
        )
    return Patient(name=name, age=age, sex=sex)  # type: ignore[arg-type]


def check_text(patient: Patient, history: str | None, limits: Limits) -> str | None:
    """Apply the patient and text limits to what any door sent; returns the normalised history."""
    check_patient(patient, limits)
    text = (history or "").strip() or None
    check_text_field("history", text, limits.max_history_chars, multiline=True)
    return text


def decode_source(data: bytes, media_type: str, limits: Limits) -> Decoded:
    """Decode image or DICOM bytes (raising 4xx errors) and describe their source."""
    if not data:
        raise EmptyBody("the upload is empty; send a JPEG, PNG, WebP or DICOM file")
    if media_type == DICOM_MEDIA_TYPE:
        dicom = decode_dicom(data, limits.image)
        return Decoded(dicom.image, dicom.source_image(), dicom)
    if media_type not in IMAGE_MEDIA_TYPES and media_type != "application/octet-stream":
        raise UnsupportedMediaType(
            f"file type '{media_type}' is not accepted; use JPEG, PNG, WebP or DICOM"
        )
    image = decode_image(data, limits.image)
    return Decoded(image, SourceImage(image.media_type, image.sha256, image.width, image.height))


@dataclass(frozen=True)
class Decoded:
    """Decoded pixels, their source description and, for DICOM, the parsed instance."""

    image: DecodedImage
    source: SourceImage
    dicom: DicomImage | None = None


def build_case(
    data: bytes,
    media_type: str,
    *,
    patient: Patient,
    history: str | None,
    language: str,
    origin: Origin,
    limits: Limits,
    fhir_reference: str | None = None,
) -> Intake:
    """The one way a case is made: limits checked, bytes decoded, source described.

    DICOM bytes make a DICOM case whatever the door: the origin is the instance, and its
    header's patient values fill in what the door did not give.
    """
    history = check_text(patient, history, limits)
    if media_type == DICOM_MEDIA_TYPE:
        data = zero_preamble(data)  # a preamble may carry a polyglot payload: never keep it
    decoded = decode_source(data, media_type, limits)
    source = decoded.source
    if decoded.dicom is not None:
        check_copied_header(decoded.dicom.header)  # what a report instance copies, by VR
        origin = decoded.dicom.origin()
        patient = merge_patient(decoded.dicom.patient, patient)
        check_text(patient, None, limits)
    if fhir_reference:
        source = replace(source, fhir_reference=fhir_reference)
    case = Case(
        case_id=new_case_id(),
        data=data,
        source=source,
        patient=patient,
        history=history,
        language=language,
        origin=origin,
    )
    return Intake(case, decoded.image.rgb)


def case_from_fields(
    data: bytes,
    media_type: str,
    fields: Mapping[str, str],
    accept_language: str | None,
    limits: Limits,
) -> Intake:
    """A plain upload (REST form/query fields, the web page, the CLI)."""
    patient = parse_patient_fields(fields, limits)
    history = check_text(patient, fields.get("history"), limits)
    language = parse_language(fields.get("language"), accept_language, limits)
    return build_case(
        data,
        media_type,
        patient=patient,
        history=history,
        language=language,
        origin=UploadOrigin(),
        limits=limits,
    )


def merge_patient(header: Patient, form: Patient) -> Patient:
    """Form values override what a DICOM header said."""
    return replace(
        header,
        name=form.name or header.name,
        age=form.age if form.age is not None else header.age,
        sex=form.sex or header.sex,
    )


def decode_case(case: Case, limits: Limits) -> Image.Image:
    """The upright RGB pixels of a (stored) case, decoded again from its original bytes."""
    return decode_source(case.data, case.source.media_type, limits).image.rgb
