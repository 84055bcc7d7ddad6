"""Read an upload (multipart `image` + fields, a raw image body, or DICOM) into a CaseInput."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from service.errors import EmptyBody, Unprocessable, UnsupportedMediaType
from service.intake.images import IMAGE_MEDIA_TYPES, DecodedImage, ImageLimits, decode_image
from service.pipeline.case import CaseInput, new_case_id
from service.pipeline.domain import LANGUAGES, Patient, SourceImage
from service.report.i18n import negotiate_language
from service.settings import Settings

DICOM_MEDIA_TYPE = "application/dicom"
SEXES = {
    "female": "female",
    "f": "female",
    "male": "male",
    "m": "male",
    "other": "other",
    "o": "other",
    "unknown": "unknown",
    "u": "unknown",
}
MAX_HISTORY_CHARS = 4000
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class Upload:
    """The raw pieces of an upload before decoding."""

    data: bytes
    media_type: str
    fields: dict[str, str]


async def read_upload(request: Request[Any, Any, Any]) -> Upload:
    """Multipart (field `image`) or a raw body with an image / DICOM content type."""
    media_type, _ = request.content_type
    media_type = media_type.lower()
    fields = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    if media_type == "multipart/form-data":
        form = await request.form()
        image = form.get("image")
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
        if image is None or isinstance(image, str):
            raise Unprocessable(
                "the multipart body has no file field named 'image'", expression=["image"]
            )
        assert isinstance(image, UploadFile)
        data = await image.read()
        part_type = (image.content_type or "").split(";")[0].strip().lower()
        return Upload(data, _sniff(data, part_type), fields)
    if media_type in IMAGE_MEDIA_TYPES or media_type == DICOM_MEDIA_TYPE:
        return Upload(await request.body(), media_type, fields)
    raise UnsupportedMediaType(
        f"content type '{media_type or 'none'}' is not accepted; send multipart/form-data with a "
        "field 'image', or a raw image/jpeg, image/png, image/webp or application/dicom body",
        accepted=sorted(
            [*IMAGE_MEDIA_TYPES - {"image/jpg"}, DICOM_MEDIA_TYPE, "multipart/form-data"]
        ),
    )


def _sniff(data: bytes, declared: str) -> str:
    """A multipart part's type: DICOM by its magic, else what the client declared."""
    if len(data) > 132 and data[128:132] == b"DICM":
        return DICOM_MEDIA_TYPE
    return declared or "application/octet-stream"


def parse_patient(fields: Mapping[str, str]) -> Patient:
    """Patient fields from form/query values; invalid values → 422 naming the field."""
    errors: list[dict[str, str]] = []
    name = (fields.get("patient_name") or "").strip() or None
    if name and len(name) > MAX_NAME_CHARS:
        errors.append({"field": "patient_name", "message": f"at most {MAX_NAME_CHARS} characters"})
    age: int | None = None
    raw_age = (fields.get("patient_age") or "").strip()
    if raw_age:
        try:
            age = int(raw_age)
            if not 0 <= age <= 130:
                raise ValueError
        except ValueError:
            errors.append({"field": "patient_age", "message": "a whole number of years, 0–130"})
            age = None
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


def parse_history(fields: Mapping[str, str]) -> str | None:
    """Free-text history, bounded."""
    history = (fields.get("history") or "").strip() or None
    if history and len(history) > MAX_HISTORY_CHARS:
        raise Unprocessable(
            f"history is limited to {MAX_HISTORY_CHARS} characters", expression=["history"]
        )
    return history


def parse_language(fields: Mapping[str, str], accept_language: str | None, default: str) -> str:
    """`language` field, else Accept-Language, else the default; unknown → 422 listing them."""
    requested = (fields.get("language") or "").strip().lower()
    if requested:
        if requested not in LANGUAGES:
            raise Unprocessable(
                f"language '{requested[:20]}' is not supported; use one of {', '.join(LANGUAGES)}",
                expression=["language"],
                supported=list(LANGUAGES),
            )
        return requested
    return negotiate_language(accept_language, default)


def decode_upload(
    upload: Upload, settings: Settings
) -> tuple[DecodedImage, Patient, dict[str, Any]]:
    """Decode the image (or DICOM); returns the image, header patient data and origin context."""
    limits = ImageLimits(max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
    if not upload.data:
        raise EmptyBody("the upload is empty; send a JPEG, PNG, WebP or DICOM file")
    if upload.media_type == DICOM_MEDIA_TYPE:
        from service.intake.dicom import decode_dicom

        dicom = decode_dicom(upload.data, limits)
        return dicom.image, dicom.patient, {"dicom": dicom}
    if (
        upload.media_type not in IMAGE_MEDIA_TYPES
        and upload.media_type != "application/octet-stream"
    ):
        raise UnsupportedMediaType(
            f"file type '{upload.media_type}' is not accepted; use JPEG, PNG, WebP or DICOM"
        )
    return decode_image(upload.data, limits), Patient(), {}


def merge_patient(header: Patient, form: Patient) -> Patient:
    """Form values override what a DICOM header said."""
    return replace(
        header,
        name=form.name or header.name,
        age=form.age if form.age is not None else header.age,
        sex=form.sex or header.sex,
    )


def case_from_upload(upload: Upload, settings: Settings, accept_language: str | None) -> CaseInput:
    """Upload → CaseInput: fields validated, image (or DICOM) decoded, source described."""
    form_patient = parse_patient(upload.fields)
    history = parse_history(upload.fields)
    language = parse_language(upload.fields, accept_language, settings.default_language)
    image, header_patient, origin = decode_upload(upload, settings)
    dicom = origin.get("dicom")
    source = (
        dicom.source_image()
        if dicom is not None
        else SourceImage(image.media_type, image.sha256, image.width, image.height)
    )
    return CaseInput(
        case_id=new_case_id(),
        image=image,
        source=source,
        patient=merge_patient(header_patient, form_patient),
        history=history,
        language=language,
        origin=origin,
    )


async def case_from_request(request: Request[Any, Any, Any], settings: Settings) -> CaseInput:
    """The whole upload → CaseInput path shared by every REST door."""
    upload = await read_upload(request)
    return case_from_upload(upload, settings, request.headers.get("accept-language"))
