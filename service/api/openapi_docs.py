"""OpenAPI descriptions of request bodies that handlers read themselves (uploads)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import OpenAPIMediaType as MediaType
from litestar.openapi.spec import Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

_BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
_STRING = Schema(type=OpenAPIType.STRING)

UPLOAD_FORM = Schema(
    type=OpenAPIType.OBJECT,
    required=["image"],
    properties={
        "image": Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.BINARY,
            description="JPEG, PNG, WebP or DICOM Part 10 file",
        ),
        "patient_name": Schema(type=OpenAPIType.STRING, max_length=200),
        "patient_age": Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=130),
        "patient_sex": Schema(type=OpenAPIType.STRING, enum=["female", "male", "other", "unknown"]),
        "history": Schema(type=OpenAPIType.STRING, max_length=4000),
        "language": Schema(type=OpenAPIType.STRING, enum=["ko", "en", "vi"]),
    },
)


def _upload_body() -> RequestBody:
    content = {"multipart/form-data": MediaType(schema=UPLOAD_FORM)}
    for media_type in ("image/jpeg", "image/png", "image/webp", "application/dicom"):
        content[media_type] = MediaType(schema=_BINARY)
    return RequestBody(
        content=content,
        required=True,
        description="A photo as multipart field `image` (with patient fields) or as the raw body "
        "(patient fields then go in the query string).",
    )


@dataclass
class UploadOperation(Operation):
    """An operation whose request body is an image upload."""

    def __post_init__(self) -> None:
        self.request_body = _upload_body()
