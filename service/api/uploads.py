"""The REST upload wire format: multipart `image` + fields, or a raw image / DICOM body.

Only parsing lives here; the case itself is built by `service.intake.cases`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from service.errors import BadRequest, Unprocessable, UnsupportedMediaType
from service.images import IMAGE_MEDIA_TYPES, off_loop
from service.intake.cases import Intake, Limits, case_from_fields
from service.pipeline.case import DICOM_MEDIA_TYPE

#: The form fields an upload may carry besides `image` (each at most once).
FORM_FIELDS = ("patient_name", "patient_age", "patient_sex", "history", "language")
# RFC 2046 §5.1.1: bchars, 1 to 70 of them, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")


@dataclass(frozen=True)
class Upload:
    """The raw pieces of an upload before decoding."""

    data: bytes
    media_type: str
    fields: dict[str, str]


async def read_upload(request: Request[Any, Any, Any]) -> Upload:
    """Multipart (field `image`) or a raw body with an image / DICOM content type."""
    media_type, options = request.content_type
    media_type = media_type.lower()
    fields = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    if media_type == "multipart/form-data":
        check_boundary(options.get("boundary"))
        try:
            form = await request.form()
        except UnicodeDecodeError:  # Litestar decodes text fields as UTF-8 and lets this out
            raise Unprocessable("every text field must be UTF-8") from None
        image = form.get("image")
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
        repeated = sorted(k for k in {*FORM_FIELDS, "image"} if len(form.getall(k, [])) > 1)
        if repeated:
            raise Unprocessable(
                f"each field may be sent once; repeated: {', '.join(repeated)}",
                expression=repeated,
            )
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


def check_boundary(boundary: str | None) -> None:
    """400 unless the multipart boundary is 1–70 characters of RFC 2046's alphabet."""
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise BadRequest(
            "the multipart boundary must be 1 to 70 characters (RFC 2046 §5.1.1)",
            expression=["Content-Type"],
        )


def _sniff(data: bytes, declared: str) -> str:
    """A multipart part's type: DICOM by its magic, else what the client declared."""
    if len(data) > 132 and data[128:132] == b"DICM":
        return DICOM_MEDIA_TYPE
    return declared or "application/octet-stream"


async def intake_from_request(request: Request[Any, Any, Any], limits: Limits) -> Intake:
    """The wire format of every REST upload door → the one intake."""
    upload = await read_upload(request)
    return await off_loop(  # decoding is CPU work: never on the event loop
        limits.image,
        case_from_fields,
        upload.data,
        upload.media_type,
        upload.fields,
        request.headers.get("accept-language"),
        limits,
    )
