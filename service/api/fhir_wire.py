"""The FHIR door's wire format: content negotiation, JSON decoding, FHIR responses and errors.

JSON only (`application/fhir+json`, also `application/json`) of FHIR R4: XML (`Accept` or
`_format`) and other FHIR versions (`Accept: …; fhirVersion=3.0`) are refused with 406, and the
CapabilityStatement says so. Every error is an OperationOutcome with the right status. Links
are absolute and built from settings (`root_url`), never from the Host header.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from fhir_mappings.outcome import operation_outcome
from service import bounded_json
from service.errors import (
    BadRequest,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    error_headers,
)

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {FHIR_JSON, "application/json"}
SUPPORTED_FHIR_VERSIONS = {"4.0", "4.0.1"}
#: `_format` values that mean FHIR JSON (FHIR R4 http.html#mime-type).
FORMATS = {"json", FHIR_JSON, "application/json", "application/json+fhir"}


def fhir_response(body: dict[str, Any], status: int = 200, **headers: str) -> Response[Any]:
    """A FHIR JSON response."""
    return Response(
        content=json.dumps(body, ensure_ascii=False).encode(),
        status_code=status,
        media_type=f"{FHIR_JSON}; charset=utf-8",
        headers=headers or None,
    )


def outcome_response(error: ServiceError) -> Response[Any]:
    """OperationOutcome with the error's status (+ Retry-After, WWW-Authenticate)."""
    return fhir_response(operation_outcome(error), error.status, **error_headers(error))


def _service_error(_: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    return outcome_response(exc)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.route_handler.resolve_request_max_body_size()
        return outcome_response(PayloadTooLarge(f"the request body exceeds {limit} bytes"))
    if exc.status_code == 404:
        return outcome_response(NotFound(str(exc.detail)))
    return outcome_response(BadRequest(str(exc.detail)))


#: Every error on a FHIR route becomes an OperationOutcome.
FHIR_EXCEPTION_HANDLERS = {ServiceError: _service_error, HTTPException: _http_error}


def check_accept(request: Request[Any, Any, Any], *extra: str) -> None:
    """406 unless the client accepts FHIR JSON of R4 (or one of `extra`): the `Accept` header
    (with its `fhirVersion` parameter) and the `_format` query parameter both count."""
    fmt = request.query_params.get("_format")
    if isinstance(fmt, str) and fmt.strip() and fmt.strip().lower() not in FORMATS:
        raise NotAcceptable(
            f"_format={fmt[:40]} is not served: this server speaks FHIR JSON only "
            "(_format=json or application/fhir+json)",
            expression=["_format"],
        )
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return
    acceptable = JSON_TYPES | {"*/*", "application/*", *extra}
    for part in accept.split(","):
        kind, *options = (piece.strip() for piece in part.split(";"))
        if kind.lower() not in acceptable:
            continue
        versions = [o.partition("=")[2].strip('"') for o in options if _is_version(o)]
        if all(v in SUPPORTED_FHIR_VERSIONS for v in versions):
            return
    raise NotAcceptable(
        f"cannot produce {accept[:100]}: this server speaks FHIR R4 (fhirVersion=4.0) JSON "
        "only (application/fhir+json)",
        expression=["Accept"],
    )


def _is_version(option: str) -> bool:
    return option.partition("=")[0].strip().lower() == "fhirversion"


def check_content_type(request: Request[Any, Any, Any]) -> None:
    """415 unless the body is FHIR JSON of a supported FHIR version."""
    media_type, options = request.content_type
    if media_type.lower() not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"content type '{media_type or 'none'}' is not accepted; send application/fhir+json",
            expression=["Content-Type"],
        )
    version = options.get("fhirVersion") or options.get("fhirversion")
    if version and version not in SUPPORTED_FHIR_VERSIONS:
        raise UnsupportedMediaType(
            f"fhirVersion={version[:20]} is not supported; this server speaks FHIR R4 (4.0)",
            expression=["Content-Type"],
        )


async def json_body(request: Request[Any, Any, Any]) -> Any:
    """The request body as JSON, or 400 (nesting depth and number length are bounded before
    anything is parsed: `service.bounded_json`)."""
    try:
        return bounded_json.loads(await request.body())
    except bounded_json.JsonRejected as exc:
        raise BadRequest(f"the body is not acceptable JSON: {exc.reason}") from None


def accepted_outcome(job_id: str, progress: str = "accepted") -> dict[str, Any]:
    """An informational OperationOutcome for 202 answers."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"$diagnose job {job_id}: {progress}",
            }
        ],
    }


def root_url(request: Request[Any, Any, Any]) -> str:
    """Absolute base of this service for links: `settings.public_base_url`, else the host and
    port it was configured to serve on — never the request's own Host header, which a caller
    controls."""
    settings = request.app.state.settings
    configured = settings.public_base_url
    if configured:
        return str(configured).rstrip("/")
    host = str(settings.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


def base_url(request: Request[Any, Any, Any]) -> str:
    """Absolute base of the FHIR endpoint (`root_url` + `/fhir`)."""
    return f"{root_url(request)}/fhir"
