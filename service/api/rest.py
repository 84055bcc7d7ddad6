"""REST doors: classify, analyze, diagnose (blocking and SSE), jobs and reports."""

from __future__ import annotations

import base64
import json
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, Parameter
from litestar.response import Stream

from service.api.auth import principal_of
from service.api.openapi_docs import UploadOperation
from service.api.problems import problem_response
from service.api.sse import last_event_id, sse_response
from service.api.uploads import intake_from_request
from service.bootstrap import Services
from service.errors import Conflict, NotFound, error_from_problem
from service.intake.cases import Intake
from service.pipeline.case import Mode
from service.pipeline.result import RunResult
from service.security import scopes as sc
from service.security.guard import check_scopes
from service.store import JobRecord

RUN = {"scopes": [sc.CREATE_REPORT]}
READ = {"scopes": [sc.READ_REPORT]}
ARTIFACT_SUFFIXES = {".pdf": "pdf", ".dcm": "dicom", ".json": "report", ".png": "heatmap"}


def services_of(request: Request[Any, Any, Any]) -> Services:
    """The wired adapters (built once at start-up)."""
    services: Services = request.app.state.services
    return services


async def submit(
    request: Request[Any, Any, Any], intake: Intake, mode: Mode, *, explain: bool = False
) -> RunResult:
    """Submit a REST case for the caller and await its result (the blocking doors)."""
    submission = await services_of(request).jobs.submit(
        intake.case,
        kind="diagnose",
        mode=mode,
        image=intake.rgb,
        explain=explain,
        client=principal_of(request).client_id,
    )
    return await submission.result()


async def owned_job(
    request: Request[Any, Any, Any], job_id: str, kind: str | None = None, need: str = ""
) -> JobRecord:
    """The job, if the caller owns it or administers `need`; else 404 (existence not leaked)."""
    job = await services_of(request).jobs.require(job_id, kind)
    principal = principal_of(request)
    if not principal.may_see(job.meta, need or sc.READ_REPORT):
        what = "job" if kind is None else f"{kind} job"
        raise NotFound(f"no {what} {job_id[:64]}")
    return job


async def erase_case(request: Request[Any, Any, Any], job_id: str) -> None:
    """Delete a finished case of the caller (404 for anyone else, 409 while it runs)."""
    check_scopes(principal_of(request), [sc.DELETE_REPORT])
    try:
        job = await owned_job(request, job_id, need=sc.DELETE_REPORT)
    except NotFound:
        raise NotFound(f"report {job_id[:64]} is not known") from None
    if not job.finished:
        raise Conflict(f"case {job_id} is {job.status}: cancel it before erasing it")
    await services_of(request).store.delete_job(job_id)


class RestController(Controller):
    """`/api/v1`: the JSON and SSE surface."""

    path = "/api/v1"
    tags = ["screening"]

    @post("/classify", status_code=200, operation_class=UploadOperation, opt=RUN)
    async def classify(
        self,
        request: Request[Any, Any, Any],
        explain: bool = Parameter(default=False, description="add a heatmap PNG (data URL)"),
    ) -> dict[str, Any]:
        """Gate + classify one image: label, calibrated probabilities, status and reasons."""
        services = services_of(request)
        intake = await intake_from_request(request, services.limits)
        result = await submit(request, intake, "classify", explain=explain)
        if result.error is not None or result.classification is None or not result.validated:
            raise error_from_problem(result.error or {})
        body: dict[str, Any] = {**result.classification, "gate": result.validated["gate"]}
        if "heatmap" in result.artifacts:
            png = result.artifacts["heatmap"][1]
            body["heatmap"] = "data:image/png;base64," + base64.b64encode(png).decode()
        return body

    @post("/analyze", status_code=200, operation_class=UploadOperation, opt=RUN)
    async def analyze(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Classification plus a one-paragraph summary (no narrative, no PDF): fast."""
        services = services_of(request)
        intake = await intake_from_request(request, services.limits)
        result = await submit(request, intake, "analyze")
        if result.error is not None or result.validated is None:
            return problem_response(result.error or {})
        validated = result.validated
        return Response(
            {
                "case_id": result.case_id,
                "language": intake.case.language,
                "gate": validated["gate"],
                "image": {k: validated[k] for k in ("width", "height", "media_type")},  # type: ignore[literal-required]
                "classification": result.classification,
                "summary": result.summary,
            }
        )

    @post("/diagnose", status_code=200, operation_class=UploadOperation, opt=RUN)
    async def diagnose(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Everything (report, PDF, FHIR); blocks until done and returns the report with links."""
        services = services_of(request)
        intake = await intake_from_request(request, services.limits)
        result = await submit(request, intake, "diagnose")
        if result.error is not None:
            return problem_response(result.error)
        body: dict[str, Any] = {"case_id": result.case_id}
        if result.narrator_fallback is not None:
            body["narrator_fallback"] = result.narrator_fallback
        body.update(report=result.report, pdf=result.pdf, links=result.links)
        return Response(body, headers={"X-Job-Id": result.case_id})

    @post("/diagnose-stream", status_code=200, operation_class=UploadOperation, opt=RUN)
    async def diagnose_stream(self, request: Request[Any, Any, Any]) -> Stream:
        """The same run as `/diagnose`, streamed as Server-Sent Events while it happens."""
        services = services_of(request)
        intake = await intake_from_request(request, services.limits)
        submission = await services.jobs.submit(
            intake.case, kind="diagnose", image=intake.rgb, client=principal_of(request).client_id
        )
        return sse_response(services.jobs, submission.job_id, 0, services.settings.sse_keepalive_s)

    @get("/jobs/{job_id:str}", opt=READ)
    async def job_status(
        self, request: Request[Any, Any, Any], job_id: FromPath[str]
    ) -> dict[str, Any]:
        """A job's status, its last event and links."""
        services = services_of(request)
        job = await owned_job(request, job_id)
        events = await services.store.events_after(job_id)
        write_back = await services.store.get_artifact(job_id, "fhir-write-back")
        return {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "created": job.created,
            "updated": job.updated,
            "events": len(events),
            "last_event": events[-1].name if events else None,
            "write_back": json.loads(write_back[1]) if write_back else None,
            "links": {
                "events": f"/api/v1/jobs/{job_id}/events",
                "report": f"/api/v1/reports/{job_id}",
            },
        }

    @get("/jobs/{job_id:str}/events", opt=READ)
    async def job_events(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        after: str | None = Parameter(default=None, description="resume after this event id"),
    ) -> Stream:
        """Re-attach to a running or finished job's SSE stream (honours Last-Event-ID)."""
        services = services_of(request)
        await owned_job(request, job_id)
        start = last_event_id(request.headers.get("last-event-id"), after)
        return sse_response(services.jobs, job_id, start, services.settings.sse_keepalive_s)

    @delete("/jobs/{job_id:str}", status_code=200, opt=RUN)
    async def cancel_job(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        erase: bool = Parameter(
            default=False, description="delete a finished job with its photo, report and events"
        ),
    ) -> dict[str, Any]:
        """Cancel a queued or running job (from any replica); `?erase=true` on a finished job
        deletes it and everything stored with it (then 404)."""
        services = services_of(request)
        job = await owned_job(request, job_id, need=sc.DELETE_REPORT if erase else sc.CREATE_REPORT)
        if erase:
            await erase_case(request, job_id)
            return {"id": job_id, "status": "erased"}
        if job.finished:
            raise Conflict(f"job {job_id} has already ended with status {job.status}")
        ended = await services.jobs.cancel(job_id)
        status = ended.status if ended is not None and ended.finished else "cancelling"
        return {"id": job_id, "status": status}

    @delete("/reports/{name:str}", status_code=204, opt={"scopes": [sc.DELETE_REPORT]})
    async def erase_report(self, request: Request[Any, Any, Any], name: FromPath[str]) -> None:
        """Erase a finished case for its owner: photo, report, PDF, FHIR, DICOM and events
        (the audit trail keeps that it happened)."""
        await erase_case(request, name)

    @get("/reports/{name:str}", opt=READ)
    async def report(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[Any]:
        """`{id}` → report JSON; `{id}.pdf` → PDF; `{id}.dcm` → DICOM Encapsulated PDF."""
        services = services_of(request)
        job_id, kind = name, "report"
        for suffix, artifact in ARTIFACT_SUFFIXES.items():
            if name.endswith(suffix):
                job_id, kind = name[: -len(suffix)], artifact
        try:
            job = await owned_job(request, job_id)
        except NotFound:
            raise NotFound(f"no {kind} for report {job_id[:64]}") from None
        stored = await services.store.get_artifact(job_id, kind)
        if stored is None:
            if not job.finished:
                raise NotFound(f"report {job_id} is not ready yet (job {job.status})")
            raise NotFound(f"no {kind} for report {job_id[:64]}")
        media_type, content = stored
        headers = {}
        if kind in ("pdf", "dicom"):
            extension = "pdf" if kind == "pdf" else "dcm"
            headers["Content-Disposition"] = (
                f'attachment; filename="skinscreen-{job_id}.{extension}"'
            )
        return Response(content, media_type=media_type, headers=headers)
