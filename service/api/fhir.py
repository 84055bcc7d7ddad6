"""The FHIR R4 door: `$diagnose` (sync and async), conformance, and reads of the results.

JSON only (`application/fhir+json`, also `application/json`); XML is refused with 406 and the
CapabilityStatement says so. Every error is an OperationOutcome with the right status.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.exceptions import HTTPException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import FromPath

from fhir_mappings.conformance import capability_statement, operation_definition
from fhir_mappings.inbound import DiagnoseInput, SubjectRef, parse_diagnose_request
from fhir_mappings.outcome import operation_outcome
from fhir_mappings.patient import domain_patient
from service import __version__
from service.api.rest import services_of
from service.api.sse import sse_response
from service.bootstrap import Services
from service.errors import (
    BadRequest,
    FhirUnprocessable,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnsupportedLanguage,
    UnsupportedMediaType,
    error_from_problem,
)
from service.fhir_client import read_patient, server_patient
from service.intake.fhir_fetch import fetch_attachment
from service.intake.images import ImageLimits, decode_image
from service.pipeline import events as ev
from service.pipeline.case import CaseInput, new_case_id
from service.pipeline.domain import LANGUAGES, Patient, SourceImage
from service.report.i18n import negotiate_language
from service.settings import Settings

FHIR_JSON = "application/fhir+json"
JSON_TYPES = {FHIR_JSON, "application/json"}
SUPPORTED_FHIR_VERSIONS = {"4.0", "4.0.1"}


def fhir_response(body: dict[str, Any], status: int = 200, **headers: str) -> Response[Any]:
    """A FHIR JSON response."""
    return Response(
        content=json.dumps(body, ensure_ascii=False).encode(),
        status_code=status,
        media_type=f"{FHIR_JSON}; charset=utf-8",
        headers=headers or None,
    )


def outcome_response(error: ServiceError) -> Response[Any]:
    """OperationOutcome with the error's status (+ Retry-After for 503)."""
    headers = {"Retry-After": str(error.retry_after)} if hasattr(error, "retry_after") else {}
    return fhir_response(operation_outcome(error), error.status, **headers)


def _service_error(_: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    return outcome_response(exc)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.route_handler.resolve_request_max_body_size()
        return outcome_response(PayloadTooLarge(f"the request body exceeds {limit} bytes"))
    if exc.status_code == 404:
        return outcome_response(NotFound(str(exc.detail)))
    return outcome_response(BadRequest(str(exc.detail)))


def check_accept(request: Request[Any, Any, Any], *extra: str) -> None:
    """406 unless the client accepts FHIR JSON (or one of `extra`)."""
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return
    offered = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    acceptable = JSON_TYPES | {"*/*", "application/*", *extra}
    if not any(kind in acceptable for kind in offered):
        raise NotAcceptable(
            f"cannot produce {accept[:100]}: this server speaks FHIR JSON only "
            "(application/fhir+json)",
            expression=["Accept"],
        )


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


async def case_from_fhir(
    request: Request[Any, Any, Any], services: Services
) -> tuple[CaseInput, str]:
    """Body → (CaseInput, output kind)."""
    try:
        body = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON ({exc.__class__.__name__})") from None
    parsed: DiagnoseInput = parse_diagnose_request(body)
    query = request.query_params
    if "output" in query:
        output = query["output"]
        if output not in ("report", "bundle"):
            raise FhirUnprocessable("output must be 'report' or 'bundle'", expression=["output"])
        parsed = dataclasses.replace(parsed, output=output)  # type: ignore[arg-type]
    language = parsed.language or query.get("language")
    if language and language not in LANGUAGES:
        raise UnsupportedLanguage(
            f"language must be one of {', '.join(LANGUAGES)}", expression=["language"]
        )
    language = language or negotiate_language(
        request.headers.get("accept-language"), services.settings.default_language
    )
    data = parsed.image.data
    if data is None:
        data = await fetch_attachment(str(parsed.image.url), services.settings)
    settings = services.settings
    image = decode_image(data, ImageLimits(settings.max_image_pixels, settings.min_image_side))
    source = SourceImage(
        media_type=image.media_type,
        sha256=image.sha256,
        width=image.width,
        height=image.height,
        fhir_reference=parsed.image.reference,
    )
    patient, subject, on_server = await resolve_subject(parsed.patient, parsed.subject, settings)
    origin: dict[str, Any] = {"fhir_subject": subject, "fhir_output": parsed.output}
    if on_server:
        origin["fhir_server_patient"] = on_server
    case = CaseInput(
        case_id=new_case_id(),
        image=image,
        source=source,
        patient=patient,
        history=parsed.history,
        language=language,
        origin=origin,
    )
    return case, parsed.output


async def resolve_subject(
    patient: Patient, subject: SubjectRef, settings: Settings
) -> tuple[Patient, SubjectRef, str | None]:
    """A bare `Patient/<id>` reference on the configured FHIR server → its Patient resource.

    Returns (patient, subject, the resolved `Patient/<id>` or None). Inline subjects, `urn:`
    references and references to other servers are left as they are.
    """
    relative = server_patient(subject.reference, settings.fhir_server_url)
    if relative is None or subject.resource is not None:
        return patient, subject, None
    resource = await read_patient(relative, settings)
    mapped = domain_patient(resource, "subject")
    if mapped.name is None and patient.name:
        mapped = dataclasses.replace(mapped, name=patient.name)
    return mapped, SubjectRef(subject.reference, resource), relative


def write_back_status(services: Services, job_id: str) -> dict[str, Any] | None:
    """The stored `fhir-write-back` outcome of a job, or None when nothing was written back."""
    stored = services.store.get_artifact(job_id, "fhir-write-back")
    if stored is None:
        return None
    outcome: dict[str, Any] = json.loads(stored[1])
    return outcome


def result_response(services: Services, job_id: FromPath[str], output: str) -> Response[Any]:
    """The finished job's DiagnosticReport / Bundle, or its OperationOutcome.

    `X-Write-Back-Status` (`succeeded`/`failed`) tells whether it reached the FHIR server.
    """
    events = services.store.events_after(job_id)
    last = events[-1] if events else None
    if last is not None and last.name == ev.ERROR:
        return outcome_response(error_from_problem(last.data))
    kind = "fhir-bundle" if output == "bundle" else "fhir"
    stored = services.store.get_artifact(job_id, kind)
    if stored is None:
        raise NotFound(f"job {job_id} has no FHIR output")
    headers = {"Location": f"/fhir/DiagnosticReport/{job_id}"}
    write_back = write_back_status(services, job_id)
    if write_back is not None:
        headers["X-Write-Back-Status"] = str(write_back.get("status"))
    return Response(stored[1], media_type=f"{FHIR_JSON}; charset=utf-8", headers=headers)


class FhirController(Controller):
    """`/fhir`: the R4 surface."""

    path = "/fhir"
    tags = ["fhir"]
    exception_handlers = {ServiceError: _service_error, HTTPException: _http_error}

    @get("/metadata")
    async def metadata(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """R4 CapabilityStatement naming `$diagnose`; JSON only."""
        check_accept(request)
        return fhir_response(capability_statement(base_url(request), __version__))

    @get("/OperationDefinition/skin-diagnose")
    async def definition(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The OperationDefinition of `$diagnose`."""
        check_accept(request)
        return fhir_response(operation_definition(base_url(request)))

    @post("/DiagnosticReport/$diagnose", status_code=200)
    async def diagnose(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Parameters or Bundle in; DiagnosticReport (or a transaction Bundle) out.

        `Prefer: respond-async` → 202 + Content-Location to poll (GET) or cancel (DELETE).
        """
        check_accept(request)
        check_content_type(request)
        services = services_of(request)
        case, output = await case_from_fhir(request, services)
        services.narrator.ensure_capacity()
        job_id = services.jobs.start(case, kind="fhir", meta={"output": output})
        if "respond-async" in request.headers.get("prefer", "").lower():
            status_url = f"{base_url(request)}/jobs/{job_id}"
            return fhir_response(
                accepted_outcome(job_id),
                202,
                **{
                    "Content-Location": status_url,
                    "Link": f'</api/v1/jobs/{job_id}/events>; rel="monitor"',
                },
            )
        await services.jobs.wait(job_id)
        return result_response(services, job_id, output)

    @get("/jobs/{job_id:str}")
    async def job_status(
        self, request: Request[Any, Any, Any], job_id: FromPath[str]
    ) -> Response[Any]:
        """202 with X-Progress while running; then the result (or its OperationOutcome)."""
        services = services_of(request)
        job = services.jobs.require(job_id, "fhir")
        if not job.finished:
            events = services.store.events_after(job_id)
            progress = events[-1].name if events else "queued"
            return fhir_response(
                accepted_outcome(job_id, progress),
                202,
                **{
                    "X-Progress": progress,
                    "Retry-After": "1",
                    "Link": f'</api/v1/jobs/{job_id}/events>; rel="monitor"',
                },
            )
        return result_response(services, job_id, str(job.meta.get("output", "report")))

    @get("/jobs/{job_id:str}/events")
    async def job_events(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> Any:
        """The job's SSE stream (so a telemedicine UI can watch an EHR-started job)."""
        services = services_of(request)
        services.jobs.require(job_id)
        after = request.headers.get("last-event-id", "0")
        start = int(after) if after.isdigit() else 0
        return sse_response(services.jobs, job_id, start, services.settings.sse_keepalive_s)

    @delete("/jobs/{job_id:str}", status_code=202)
    async def cancel(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[Any]:
        """Cancel an async `$diagnose`."""
        services = services_of(request)
        services.jobs.require(job_id, "fhir")
        await services.jobs.cancel(job_id)
        return fhir_response(accepted_outcome(job_id, "cancelled"), 202)

    @get("/DiagnosticReport/{report_id:str}")
    async def read_report(
        self, request: Request[Any, Any, Any], report_id: FromPath[str]
    ) -> Response[Any]:
        """A DiagnosticReport produced earlier."""
        check_accept(request)
        stored = services_of(request).store.get_artifact(report_id, "fhir")
        if stored is None:
            raise NotFound(f"DiagnosticReport/{report_id[:64]} is not known")
        return Response(stored[1], media_type=f"{FHIR_JSON}; charset=utf-8")

    @get("/Binary/{binary_id:str}")
    async def read_binary(
        self, request: Request[Any, Any, Any], binary_id: FromPath[str]
    ) -> Response[Any]:
        """The report PDF: raw for `Accept: application/pdf`, else a FHIR Binary resource."""
        check_accept(request, "application/pdf")
        stored = services_of(request).store.get_artifact(binary_id, "pdf")
        if stored is None:
            raise NotFound(f"Binary/{binary_id[:64]} is not known")
        if "application/pdf" in request.headers.get("accept", ""):
            return Response(stored[1], media_type="application/pdf")
        return fhir_response(
            {
                "resourceType": "Binary",
                "id": binary_id,
                "contentType": "application/pdf",
                "data": base64.b64encode(stored[1]).decode("ascii"),
            }
        )


def accepted_outcome(job_id: FromPath[str], progress: str = "accepted") -> dict[str, Any]:
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


def base_url(request: Request[Any, Any, Any]) -> str:
    """Absolute base of the FHIR endpoint (settings.public_base_url wins)."""
    configured = services_of(request).settings.public_base_url
    root = configured.rstrip("/") if configured else str(request.base_url).rstrip("/")
    return f"{root}/fhir"
