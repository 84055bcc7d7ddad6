"""One error tree for the whole service.

Every failure a client can cause is a `ServiceError` with an HTTP status, a stable machine
`code`, a short `title` and a `detail` that never contains patient data. REST renders them as
RFC 9457 problem+json, FHIR routes as OperationOutcome, DICOMweb as FailedSOPSequence reasons.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    """Base of every client-visible error."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, expression: list[str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.expression = expression or []
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """RFC 9457 body."""
        body: dict[str, Any] = {
            "type": f"https://skinscreen.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(ServiceError):
    """Malformed request (e.g. invalid JSON, multipart without boundary)."""


class Unauthorized(ServiceError):
    """No or invalid credentials: 401 with `WWW-Authenticate: Bearer`."""

    status, code, title = 401, "unauthorized", "Authentication required"
    www_authenticate = 'Bearer realm="skinscreen"'


class InsufficientScope(ServiceError):
    """Valid credentials without the scope the route needs."""

    status, code, title = 403, "insufficient_scope", "Insufficient scope"

    def __init__(self, detail: str, *, scope: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.www_authenticate = f'Bearer error="insufficient_scope", scope="{scope}"'


class Forbidden(ServiceError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(ServiceError):
    status, code, title = 404, "not-found", "Not found"


class NotAcceptable(ServiceError):
    status, code, title = 406, "not-acceptable", "Not acceptable"


class PayloadTooLarge(ServiceError):
    status, code, title = 413, "payload-too-large", "Payload too large"


class ImageTooLarge(ServiceError):
    status, code, title = 413, "image-too-large", "Image dimensions exceed the limit"


class UnsupportedMediaType(ServiceError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class Unprocessable(ServiceError):
    status, code, title = 422, "unprocessable", "Unprocessable content"


class InvalidImage(Unprocessable):
    code, title = "invalid-image", "The image cannot be decoded"


class ImageTooSmall(Unprocessable):
    code, title = "image-too-small", "The image is too small"


class EmptyBody(Unprocessable):
    code, title = "empty-body", "The request has no image"


class Conflict(ServiceError):
    status, code, title = 409, "conflict", "Conflict"


class ServiceUnavailable(ServiceError):
    status, code, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class TooManyRequests(ServiceUnavailable):
    """One client has too many cases queued or running (the others are still served)."""

    status, code, title = 429, "too-many-requests", "Too many requests"


class StorageFault(ServiceUnavailable):
    """The store cannot write (read-only data directory, I/O error, database down): 503."""

    code, title = "storage-unavailable", "Storage unavailable"


class StorageFull(StorageFault):
    """The disk (or the database's quota) is full: 507 Insufficient Storage."""

    status, code, title = 507, "insufficient-storage", "Insufficient storage"


class StoredDataUnreadable(StorageFault):
    """Sealed data that the configured key cannot open (no key, another key, tampered)."""

    code, title = "stored-data-unreadable", "Stored data cannot be read"


class UnsupportedLanguage(Unprocessable):
    code, title = "unsupported-language", "Unsupported report language"


class InvalidFhir(BadRequest):
    code, title = "invalid-fhir", "Invalid FHIR content"


class FhirUnprocessable(Unprocessable):
    code, title = "fhir-unprocessable", "The FHIR request cannot be processed"


class UnsupportedAttachment(Unprocessable):
    """An attachment that is not an image (e.g. audio): 422, since the HTTP body type is fine."""

    code, title = "unsupported-attachment", "The attachment is not a supported image"


class FetchNotAllowed(Unprocessable):
    code, title = "fetch-not-allowed", "The image URL may not be fetched"


class InvalidDicom(Unprocessable):
    """A body sent as DICOM that cannot be used (not Part 10, truncated, undecodable pixels).

    A body declared `application/dicom` that is not DICOM gets 422, not 415: the declared media
    type is supported, the content is not processable (RFC 9110 §15.5.21).
    """

    code, title = "invalid-dicom", "The DICOM instance cannot be used"


class DicomMismatch(InvalidDicom):
    """The data set does not match its SOP class (no or wrong-sized pixel data, multi-frame)."""

    code, title = "dicom-mismatch", "The DICOM data set does not match its SOP class"


class UnsupportedSopClass(InvalidDicom):
    """A SOP class that is not a single-frame photograph (SR, CT, whole-slide, …)."""

    code, title = "unsupported-sop-class", "The DICOM SOP class is not supported"


def error_headers(error: ServiceError) -> dict[str, str]:
    """The HTTP headers an error answer carries (Retry-After, WWW-Authenticate)."""
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    challenge = getattr(error, "www_authenticate", None)
    if challenge:
        headers["WWW-Authenticate"] = str(challenge)
    return headers


def error_from_problem(body: dict[str, Any]) -> ServiceError:
    """Rebuild a ServiceError from a problem+json body (e.g. a run's `error` event), so any
    door can render it in its own format (OperationOutcome, DICOMweb failure reason)."""
    kind = type(
        "ProblemError",
        (ServiceError,),
        {
            "status": int(body.get("status", 500)),
            "code": str(body.get("code", "internal-error")),
            "title": str(body.get("title", "Request failed")),
        },
    )
    error: ServiceError = kind(str(body.get("detail", "")))
    return error
