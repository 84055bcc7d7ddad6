"""REST doors: classify, analyze, diagnose (blocking and SSE), jobs and reports."""

from __future__ import annotations

import base64
import json
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, Parameter
from litestar.response import Stream

from service.api.openapi_docs import UploadOperation
from service.api.problems import problem_response
from service.api.sse import last_event_id, sse_response
from service.api.uploads import case_from_request, decode_upload, read_upload
from service.bootstrap import Services
from service.errors import Conflict, NotFound
from service.pipeline import events as ev
from service.pipeline.case import MemorySink
from service.pipeline.report_json import classification_json, gate_json
from service.pipeline.run import run_case

ARTIFACT_SUFFIXES = {".pdf": "pdf", ".dcm": "dicom", ".json": "report", ".png": "heatmap"}


def services_of(request: Request[Any, Any, Any]) -> Services:
    """The wired adapters (built once at start-up)."""
    services: Services = request.app.state.services
    return services


class RestController(Controller):
    """`/api/v1`: the JSON and SSE surface."""

    path = "/api/v1"
    tags = ["screening"]

    @post("/classify", status_code=200, operation_class=UploadOperation)
    async def classify(
        self,
        request: Request[Any, Any, Any],
        explain: bool = Parameter(default=False, description="add a heatmap PNG (data URL)"),
    ) -> dict[str, Any]:
        """Gate + classify one image: label, calibrated probabilities, status and reasons."""
        services = services_of(request)
        upload = await read_upload(request)
        image, _, _ = decode_upload(upload, services.settings)
        gate, classification = await services.screen(image.rgb)
        body = classification_json(classification)
        body["gate"] = gate_json(gate)
        if explain and gate.status != "rejected":
            png = await services.explain(image.rgb, classification)
            body["heatmap"] = "data:image/png;base64," + base64.b64encode(png).decode()
        return body

    @post("/analyze", status_code=200, operation_class=UploadOperation)
    async def analyze(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Classification plus a one-paragraph summary (no narrative, no PDF): fast."""
        services = services_of(request)
        case = await case_from_request(request, services.settings)
        body: dict[str, Any] = {"case_id": case.case_id, "language": case.language}
        async for event in run_case(services.deps, case, MemorySink(), mode="analyze"):
            if event.name == ev.ERROR:
                return problem_response(event.data)
            if event.name == ev.VALIDATED:
                body["gate"] = event.data["gate"]
                body["image"] = {k: event.data[k] for k in ("width", "height", "media_type")}
            elif event.name == ev.CLASSIFIED:
                body["classification"] = event.data
            elif event.name == ev.ANALYSIS:
                body["summary"] = event.data["summary"]
        return Response(body)

    @post("/diagnose", status_code=200, operation_class=UploadOperation)
    async def diagnose(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Everything (report, PDF, FHIR); blocks until done and returns the report with links."""
        services = services_of(request)
        case = await case_from_request(request, services.settings)
        services.narrator.ensure_capacity()
        job_id = services.jobs.start(case)
        events = await services.jobs.wait(job_id)
        body: dict[str, Any] = {"case_id": job_id}
        for event in events:
            if event.name == ev.ERROR:
                return problem_response(event.data)
            if event.name == ev.NARRATOR_FALLBACK:
                body["narrator_fallback"] = event.data
            elif event.name == ev.REPORT_COMPLETED:
                body["report"] = event.data["report"]
            elif event.name == ev.PDF_READY:
                body["pdf"] = event.data
            elif event.name == ev.COMPLETED:
                body["links"] = event.data["links"]
        return Response(body)

    @post("/diagnose-stream", status_code=200, operation_class=UploadOperation)
    async def diagnose_stream(self, request: Request[Any, Any, Any]) -> Stream:
        """The same run as `/diagnose`, streamed as Server-Sent Events while it happens."""
        services = services_of(request)
        case = await case_from_request(request, services.settings)
        services.narrator.ensure_capacity()
        job_id = services.jobs.start(case)
        return sse_response(services.jobs, job_id, 0, services.settings.sse_keepalive_s)

    @get("/jobs/{job_id:str}")
    async def job_status(
        self, request: Request[Any, Any, Any], job_id: FromPath[str]
    ) -> dict[str, Any]:
        """A job's status, its last event and links."""
        services = services_of(request)
        job = services.jobs.require(job_id)
        events = services.store.events_after(job_id)
        write_back = services.store.get_artifact(job_id, "fhir-write-back")
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

    @get("/jobs/{job_id:str}/events")
    async def job_events(
        self,
        request: Request[Any, Any, Any],
        job_id: FromPath[str],
        after: str | None = Parameter(default=None, description="resume after this event id"),
    ) -> Stream:
        """Re-attach to a running or finished job's SSE stream (honours Last-Event-ID)."""
        services = services_of(request)
        services.jobs.require(job_id)
        start = last_event_id(request.headers.get("last-event-id"), after)
        return sse_response(services.jobs, job_id, start, services.settings.sse_keepalive_s)

    @delete("/jobs/{job_id:str}", status_code=200)
    async def cancel_job(
        self, request: Request[Any, Any, Any], job_id: FromPath[str]
    ) -> dict[str, Any]:
        """Cancel a running job (generation stops promptly)."""
        services = services_of(request)
        job = services.jobs.require(job_id)
        if job.finished:
            raise Conflict(f"job {job_id} has already ended with status {job.status}")
        await services.jobs.cancel(job_id)
        return {"id": job_id, "status": "cancelled"}

    @get("/reports/{name:str}")
    async def report(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[Any]:
        """`{id}` → report JSON; `{id}.pdf` → PDF; `{id}.dcm` → DICOM Encapsulated PDF."""
        services = services_of(request)
        job_id, kind = name, "report"
        for suffix, artifact in ARTIFACT_SUFFIXES.items():
            if name.endswith(suffix):
                job_id, kind = name[: -len(suffix)], artifact
        stored = services.store.get_artifact(job_id, kind)
        if stored is None:
            job = services.jobs.get(job_id)
            if job is not None and not job.finished:
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
