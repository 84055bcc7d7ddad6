"""Image-bearing FHIR content (Attachment, Media, DocumentReference, Binary) → ImageSource."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.errors import FhirUnprocessable, InvalidFhir, UnsupportedAttachment

IMAGE_RESOURCE_TYPES = ("Media", "DocumentReference", "Binary")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ImageSource:
    """The request's image: inline bytes, or a URL to fetch with service.intake.fhir_fetch."""

    content_type: str
    data: bytes | None = None
    url: str | None = None
    #: Reference of the source resource ("Media/example", "urn:uuid:…"), for media.link.
    reference: str | None = None
    #: Where the attachment sits in the request (FHIRPath-like), for later errors.
    expression: str = ""


@dataclass(frozen=True)
class Candidate:
    """One attachment found in a resource, before it is accepted as an image."""

    attachment: dict[str, Any]
    expression: str

    @property
    def content_type(self) -> str:
        return str(self.attachment.get("contentType") or "")

    @property
    def is_image(self) -> bool:
        return self.content_type.split(";")[0].strip().lower().startswith("image/")


def candidates(resource: dict[str, Any], expression: str) -> list[Candidate]:
    """Every attachment of a Media, DocumentReference or Binary, in document order."""
    kind = resource.get("resourceType")
    if kind == "Media":
        return [Candidate(resource.get("content") or {}, f"{expression}.content")]
    if kind == "DocumentReference":
        return [
            Candidate(item.get("attachment") or {}, f"{expression}.content[{index}].attachment")
            for index, item in enumerate(resource.get("content") or [])
        ]
    if kind == "Binary":
        return [Candidate(resource, expression)]
    return []


def image_source(
    candidate: Candidate,
    reference: str | None,
    resolve: Callable[[str], dict[str, Any] | None] | None = None,
) -> ImageSource:
    """Accept a candidate as the request's image, or raise a precise ServiceError.

    `resolve` maps an in-Bundle `urn:uuid:` attachment URL to its Binary resource.
    """
    attachment, expression = candidate.attachment, candidate.expression
    if not candidate.content_type:
        raise FhirUnprocessable(
            "the image attachment has no contentType", expression=[f"{expression}.contentType"]
        )
    if not candidate.is_image:
        raise UnsupportedAttachment(
            f"the attachment is {candidate.content_type}, not an image; send image/jpeg, "
            "image/png or image/webp",
            expression=[f"{expression}.contentType"],
        )
    content_type = candidate.content_type.split(";")[0].strip().lower()
    url = attachment.get("url")
    data_text = attachment.get("data")
    if data_text is None and isinstance(url, str) and url.startswith("urn:") and resolve:
        target = resolve(url)
        if target is None or target.get("resourceType") != "Binary":
            raise FhirUnprocessable(
                f"attachment url {url} does not resolve to a Binary in the Bundle",
                expression=[f"{expression}.url"],
            )
        data_text = target.get("data")
    if isinstance(data_text, str):
        data = decode_base64(data_text, f"{expression}.data")
        _check_integrity(attachment, data, expression)
        return ImageSource(content_type, data=data, reference=reference, expression=expression)
    if isinstance(url, str) and url and not url.startswith("urn:"):
        return ImageSource(content_type, url=url, reference=reference, expression=expression)
    raise FhirUnprocessable(
        "the image attachment has neither data nor a fetchable url", expression=[expression]
    )


def decode_base64(text: str, expression: str) -> bytes:
    """Strict base64 (whitespace tolerated, as in HL7's own examples)."""
    try:
        data = base64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFhir("attachment data is not valid base64", expression=[expression]) from None
    if not data:
        raise FhirUnprocessable("attachment data is empty", expression=[expression])
    return data


def _check_integrity(attachment: dict[str, Any], data: bytes, expression: str) -> None:
    size = attachment.get("size")
    if isinstance(size, int) and size != len(data):
        raise FhirUnprocessable(
            f"attachment size says {size} bytes but data has {len(data)}",
            expression=[f"{expression}.size"],
        )
    digest = attachment.get("hash")
    if isinstance(digest, str):
        expected = base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
        if _WHITESPACE.sub("", digest) != expected:
            raise FhirUnprocessable(
                "attachment hash is not the base64 SHA-1 of its data",
                expression=[f"{expression}.hash"],
            )
