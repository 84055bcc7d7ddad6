"""Clinician review doors: `POST /api/v1/reports/{id}/review` (JSON) and the FHIR
`POST /fhir/DiagnosticReport/{id}/$review` (Parameters), plus the versioned FHIR reads
(`_history`, `_history/{vid}`, ETag / If-None-Match).

Both review doors only parse their wire format into the one review mapping and call
`services.reviews.review`; the rules live in `intake.review` and `reviews`.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from fhir_mappings.review_operation import review_operation_definition
from service.api.auth import principal_of
from service.api.fhir_wire import (
    FHIR_EXCEPTION_HANDLERS,
    FHIR_JSON,
    base_url,
    check_accept,
    check_content_type,
    fhir_response,
    json_body,
)
from service.api.rest import owned_job, services_of
from service.errors import BadRequest, NotFound
from service.intake.review import parse_review
from service.pipeline.report_json import report_json
from service.security import scopes as sc

REVIEW = {"scopes": [sc.REVIEW_REPORT]}
READ = {"scopes": [sc.READ_REPORT]}


async def _review(request: Request[Any, Any, Any], report_id: str, body: Any) -> Any:
    services = services_of(request)
    try:
        await owned_job(request, report_id, need=sc.REVIEW_REPORT)
    except NotFound:
        raise NotFound(f"report {report_id[:64]} is not known") from None
    given = parse_review(body)
    return await services.reviews.review(report_id, given, principal_of(request).client_id)


class ReviewController(Controller):
    """`/api/v1/reports/{id}/review`."""

    path = "/api/v1"
    tags = ["review"]

    @post("/reports/{report_id:str}/review", status_code=200, opt=REVIEW)
    async def review(
        self, request: Request[Any, Any, Any], report_id: FromPath[str]
    ) -> dict[str, Any]:
        """Sign the report as a clinician: `{"reviewer": {"name", "id"?}, "decision":
        "confirm" | "revise" | "not_assessable", "finding"?: class (revise only),
        "comment"?}`. Answers the new version of the report JSON; the PDF, FHIR and DICOM
        outputs are re-issued and `report.reviewed` goes to the job's event stream."""
        reviewed = await _review(request, report_id, await json_body(request))
        return report_json(reviewed)


def _parameters_review(body: Any) -> dict[str, Any]:
    """`$review` Parameters → the review mapping (`reviewer-name`, `reviewer-id`, `decision`,
    `finding`, `comment`; strings or codes)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("$review takes a Parameters resource")
    values: dict[str, Any] = {}
    for parameter in body.get("parameter") or []:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise BadRequest("every parameter needs a name")
        value = next(
            (
                parameter[k]
                for k in ("valueString", "valueCode", "valueIdentifier")
                if k in parameter
            ),
            None,
        )
        if isinstance(value, dict):  # an Identifier for reviewer-id
            value = value.get("value")
        values[parameter["name"]] = value
    return {
        "reviewer": {"name": values.get("reviewer-name"), "id": values.get("reviewer-id")},
        "decision": values.get("decision"),
        "finding": values.get("finding"),
        "comment": values.get("comment"),
    }


def _etag(resource: dict[str, Any]) -> str:
    return f'W/"{resource.get("meta", {}).get("versionId", "1")}"'


class FhirReviewController(Controller):
    """`/fhir/DiagnosticReport/{id}/$review`, `/_history`, `/_history/{vid}`."""

    path = "/fhir"
    tags = ["fhir"]
    exception_handlers = FHIR_EXCEPTION_HANDLERS  # type: ignore[assignment]

    @get("/OperationDefinition/skin-review", opt={"public": True})
    async def definition(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The OperationDefinition of `$review`."""
        check_accept(request)
        return fhir_response(review_operation_definition())

    @post("/DiagnosticReport/{report_id:str}/$review", status_code=200, opt=REVIEW)
    async def review(
        self, request: Request[Any, Any, Any], report_id: FromPath[str]
    ) -> Response[Any]:
        """Clinician sign-off (OperationDefinition `skin-review`): the new DiagnosticReport
        version (`final`, or `amended` for a revision)."""
        check_accept(request)
        check_content_type(request)
        await _review(request, report_id, _parameters_review(await json_body(request)))
        return await self._version(request, report_id, None)

    @get("/DiagnosticReport/{report_id:str}/_history", opt=READ)
    async def history(
        self, request: Request[Any, Any, Any], report_id: FromPath[str]
    ) -> Response[Any]:
        """Every version of the DiagnosticReport, newest first (a `history` Bundle)."""
        check_accept(request)
        await self._owned(request, report_id)
        base = base_url(request)
        entries = []
        for version, content in await services_of(request).reviews.history(report_id, "fhir"):
            resource = json.loads(content)
            entries.append(
                {
                    "fullUrl": f"{base}/DiagnosticReport/{report_id}",
                    "resource": resource,
                    "request": {
                        "method": "POST" if version == 1 else "PUT",
                        "url": "DiagnosticReport"
                        if version == 1
                        else f"DiagnosticReport/{report_id}",
                    },
                    "response": {
                        "status": "201 Created" if version == 1 else "200 OK",
                        "etag": _etag(resource),
                        "lastModified": resource.get("meta", {}).get("lastUpdated"),
                    },
                }
            )
        return fhir_response(
            {
                "resourceType": "Bundle",
                "type": "history",
                "total": len(entries),
                "link": [
                    {"relation": "self", "url": f"{base}/DiagnosticReport/{report_id}/_history"}
                ],
                "entry": entries,
            }
        )

    @get("/DiagnosticReport/{report_id:str}/_history/{version_id:str}", opt=READ)
    async def vread(
        self, request: Request[Any, Any, Any], report_id: FromPath[str], version_id: FromPath[str]
    ) -> Response[Any]:
        """One version of the DiagnosticReport."""
        check_accept(request)
        await self._owned(request, report_id)
        if not version_id.isdigit() or len(version_id) > 6:
            raise NotFound(f"DiagnosticReport/{report_id[:64]} has no version {version_id[:20]}")
        return await self._version(request, report_id, int(version_id))

    async def _owned(self, request: Request[Any, Any, Any], report_id: str) -> None:
        try:
            await owned_job(request, report_id)
        except NotFound:
            raise NotFound(f"DiagnosticReport/{report_id[:64]} is not known") from None

    async def _version(
        self, request: Request[Any, Any, Any], report_id: str, version: int | None
    ) -> Response[Any]:
        desk = services_of(request).reviews
        if version is None:
            stored = await services_of(request).store.get_artifact(report_id, "fhir")
        else:
            stored = await desk.version_of(report_id, version, "fhir")
        if stored is None:
            raise NotFound(f"DiagnosticReport/{report_id[:64]} has no version {version}")
        return versioned_response(request, stored[1])


def versioned_response(request: Request[Any, Any, Any], content: bytes) -> Response[Any]:
    """A stored resource with `ETag: W/"<versionId>"` and Last-Modified; 304 when the
    client's `If-None-Match` already names this version."""
    resource = json.loads(content)
    etag = _etag(resource)
    updated = resource.get("meta", {}).get("lastUpdated")
    headers = {"ETag": etag, **({"Last-Modified": updated} if updated else {})}
    wanted = [t.strip() for t in request.headers.get("if-none-match", "").split(",")]
    if etag in wanted or etag.removeprefix("W/") in wanted or "*" in wanted:
        return Response(b"", status_code=304, headers=headers)
    return Response(content, media_type=f"{FHIR_JSON}; charset=utf-8", headers=headers)
