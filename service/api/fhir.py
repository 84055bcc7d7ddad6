"""The FHIR R4 door: `$diagnose` (sync and async), conformance, and reads of the results.

Wire format (negotiation, JSON, OperationOutcome errors) is `fhir_wire`; the case is built by
`service.intake.fhir_case` and submitted like every other case.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath
from litestar.response import Stream

from fhir_mappings.conformance import capability_statement, operation_definition
from service import __version__
from service.api.auth import principal_of
from service.api.fhir_async import batch_response
from service.api.fhir_wire import (
    FHIR_EXCEPTION_HANDLERS,
    FHIR_JSON,
    accepted_outcome,
    base_url,
    check_accept,
    check_content_type,
    fhir_response,
    json_body,
    outcome_response,
    root_url,
)
from service.api.rest import READ, RUN, erase_case, owned_job, services_of
from service.api.reviews import versioned_response
from service.api.sse import last_event_id, sse_response
from service.bootstrap import Services
from service.errors import NotFound, error_from_problem
from service.intake.fhir_case import case_from_fhir
from service.pipeline import events as ev
from service.security import scopes as sc

OPEN = {"public": True}
#: `Binary/<case id>.photo` is the analysed photo of a case (`fhir_mappings.outbound`).
PHOTO_SUFFIX = ".photo"
PHOTO_TYPES = ("image/*", "image/jpeg", "image/png", "image/webp", "application/dicom")


async def write_back_status(services: Services, job_id: str) -> dict[str, Any] | None:
    """The stored `fhir-write-back` outcome of a job, or None when nothing was written back."""
    stored = await services.store.get_artifact(job_id, "fhir-write-back")
    if stored is None:
        return None
    outcome: dict[str, Any] = json.loads(stored[1])
    return outcome


async def result_response(services: Services, job_id: str, output: str) -> Response[Any]:
    """The finished job's DiagnosticReport / Bundle, or its OperationOutcome (the answer of a
    synchronous `$diagnose`: 200, no Location — nothing is created at a URL the client asked
    for; `X-Job-Id` names the case). `X-Write-Back-Status` (`succeeded`/`failed`) tells
    whether it reached the FHIR server.
    """
    events = await services.store.events_after(job_id)
    last = events[-1] if events else None
    if last is not None and last.name == ev.ERROR:
        return outcome_response(error_from_problem(last.data))
    kind = "fhir-bundle" if output == "bundle" else "fhir"
    stored = await services.store.get_artifact(job_id, kind)
    if stored is None:
        raise NotFound(f"job {job_id} has no FHIR output")
    headers = {"X-Job-Id": job_id}
    write_back = await write_back_status(services, job_id)
    if write_back is not None:
        headers["X-Write-Back-Status"] = str(write_back.get("status"))
    return Response(stored[1], media_type=f"{FHIR_JSON}; charset=utf-8", headers=headers or None)


def _monitor(request: Request[Any, Any, Any], job_id: str) -> str:
    """The `Link` to the job's SSE stream (absolute)."""
    return f'<{root_url(request)}/api/v1/jobs/{job_id}/events>; rel="monitor"'


async def _owned_resource(request: Request[Any, Any, Any], job_id: str, what: str) -> None:
    """404 with the FHIR wording unless the caller may read this case's resources."""
    try:
        await owned_job(request, job_id)
    except NotFound:
        raise NotFound(f"{what} is not known") from None


class FhirController(Controller):
    """`/fhir`: the R4 surface."""

    path = "/fhir"
    tags = ["fhir"]
    exception_handlers = FHIR_EXCEPTION_HANDLERS  # type: ignore[assignment]

    @get("/metadata", opt=OPEN)
    async def metadata(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """R4 CapabilityStatement naming `$diagnose`; JSON only."""
        check_accept(request)
        security = request.app.state.security
        token_url = security.token_url if security.on else None
        return fhir_response(capability_statement(base_url(request), __version__, token_url))

    @get("/OperationDefinition/skin-diagnose", opt=OPEN)
    async def definition(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The OperationDefinition of `$diagnose`."""
        check_accept(request)
        return fhir_response(operation_definition(base_url(request)))

    @post("/DiagnosticReport/$diagnose", status_code=200, opt=RUN)
    async def diagnose(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Parameters or Bundle in; DiagnosticReport (or a transaction Bundle) out.

        `Prefer: respond-async` → 202 + Content-Location to poll (GET) or cancel (DELETE).
        """
        check_accept(request)
        check_content_type(request)
        services = services_of(request)
        intake = await case_from_fhir(
            await json_body(request),
            {k: v for k, v in request.query_params.items() if isinstance(v, str)},
            request.headers.get("accept-language"),
            services.limits,
            services.fhir_server,
        )
        output = getattr(intake.case.origin, "output", "report")
        submission = await services.jobs.submit(
            intake.case,
            kind="fhir",
            image=intake.rgb,
            meta={"output": output},
            client=principal_of(request).client_id,
        )
        job_id = submission.job_id
        if "respond-async" in request.headers.get("prefer", "").lower():
            status_url = f"{base_url(request)}/jobs/{job_id}"
            return fhir_response(
                accepted_outcome(job_id),
                202,
                **{"Content-Location": status_url, "Link": _monitor(request, job_id)},
            )
        await submission.result()
        return await result_response(services, job_id, output)

    @get("/jobs/{job_id:str}", opt=READ)
    async def job_status(
        self, request: Request[Any, Any, Any], job_id: FromPath[str]
    ) -> Response[Any]:
        """202 with X-Progress while running; then a `batch-response` Bundle holding the result
        (or its OperationOutcome); 404 once cancelled or deleted."""
        check_accept(request)
        services = services_of(request)
        job = await owned_job(request, job_id, "fhir")
        if not job.finished:
            events = await services.store.events_after(job_id)
            progress = events[-1].name if events else "queued"
            return fhir_response(
                accepted_outcome(job_id, progress),
                202,
                **{"X-Progress": progress, "Retry-After": "1", "Link": _monitor(request, job_id)},
            )
        bundle = await batch_response(services, job, base_url(request))
        headers = {}
        write_back = await write_back_status(services, job_id)
        if write_back is not None:
            headers["X-Write-Back-Status"] = str(write_back.get("status"))
        return fhir_response(bundle, 200, **headers)

    @get("/jobs/{job_id:str}/events", opt=READ)
    async def job_events(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> Stream:
        """The job's SSE stream (so a telemedicine UI can watch an EHR-started job)."""
        services = services_of(request)
        await owned_job(request, job_id)
        start = last_event_id(request.headers.get("last-event-id"), None)
        return sse_response(services.jobs, job_id, start, services.settings.sse_keepalive_s)

    @delete("/jobs/{job_id:str}", status_code=202, opt=RUN)
    async def cancel(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[Any]:
        """Cancel a running async `$diagnose`, or delete a finished one (its report, PDF and
        photo; needs the delete scope): 202, then the status URL answers 404."""
        services = services_of(request)
        job = await owned_job(request, job_id, "fhir")
        if job.finished:
            await erase_case(request, job_id)
            return fhir_response(accepted_outcome(job_id, "deleted"), 202)
        await services.jobs.cancel(job_id)
        return fhir_response(accepted_outcome(job_id, "cancelled"), 202)

    @get("/DiagnosticReport/{report_id:str}", opt=READ)
    async def read_report(
        self, request: Request[Any, Any, Any], report_id: FromPath[str]
    ) -> Response[Any]:
        """A DiagnosticReport produced earlier."""
        check_accept(request)
        await _owned_resource(request, report_id, f"DiagnosticReport/{report_id[:64]}")
        stored = await services_of(request).store.get_artifact(report_id, "fhir")
        if stored is None:
            raise NotFound(f"DiagnosticReport/{report_id[:64]} is not known")
        return versioned_response(request, stored[1])

    @delete(
        "/DiagnosticReport/{report_id:str}",
        status_code=204,
        opt={"scopes": [sc.DELETE_REPORT]},
    )
    async def delete_report(
        self, request: Request[Any, Any, Any], report_id: FromPath[str]
    ) -> None:
        """Erase the case behind a DiagnosticReport (photo, PDF, resources, DICOM, events)."""
        try:
            await erase_case(request, report_id)
        except NotFound:
            raise NotFound(f"DiagnosticReport/{report_id[:64]} is not known") from None

    @get("/Binary/{binary_id:str}", opt=READ)
    async def read_binary(
        self, request: Request[Any, Any, Any], binary_id: FromPath[str]
    ) -> Response[Any]:
        """`Binary/{id}`: the report PDF; `Binary/{id}.photo`: the analysed photo as received
        (what the report's contained Media points at). Raw for an `Accept` naming its type,
        else a FHIR Binary resource."""
        job_id, photo = binary_id.removesuffix(PHOTO_SUFFIX), binary_id.endswith(PHOTO_SUFFIX)
        check_accept(request, "application/pdf", *PHOTO_TYPES)
        await _owned_resource(request, job_id, f"Binary/{binary_id[:64]}")
        store = services_of(request).store
        if photo:
            case = await store.get_case(job_id)
            stored = (str(case[0]["source"]["media_type"]), case[1]) if case else None
        else:
            stored = await store.get_artifact(job_id, "pdf")
        if stored is None:
            raise NotFound(f"Binary/{binary_id[:64]} is not known")
        media_type, content = stored
        accept = request.headers.get("accept", "")
        if media_type in accept or (photo and "image/*" in accept):
            return Response(content, media_type=media_type)
        return fhir_response(
            {
                "resourceType": "Binary",
                "id": binary_id,
                "contentType": media_type,
                "data": base64.b64encode(content).decode("ascii"),
            }
        )
