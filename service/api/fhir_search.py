"""FHIR search: `GET /fhir/DiagnosticReport?…`, `GET /fhir/Patient?…`, `GET /fhir/Patient/{id}`,
and the project CodeSystem at its canonical.

Reads the small index each finished case stores with its report (`fhir-index`, see
`fhir_mappings.search_index`) through `JobStore.indexed_jobs`, owner-scoped like every read
(`Principal.may_see`). Answers `searchset` Bundles with `total` and absolute `self`/`next` links
built from settings (`fhir_wire.base_url`), newest first. Unknown parameters are ignored and
left out of the `self` link, or refused with 400 under `Prefer: handling=strict`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from fhir_mappings.code_system import CODE_SYSTEM_ID, code_system
from fhir_mappings.search_index import INDEX_KIND
from service.api.auth import principal_of
from service.api.fhir_search_params import (
    RESULT_PARAMS,
    Row,
    paging,
    patient_filter,
    report_filter,
)
from service.api.fhir_wire import FHIR_EXCEPTION_HANDLERS, base_url, check_accept, fhir_response
from service.api.rest import services_of
from service.errors import BadRequest, NotFound
from service.security import scopes as sc
from service.store.records import now_iso

SEARCH_REPORT = "system/DiagnosticReport.s"
READ_PATIENT = "system/Patient.r"
SEARCH_PATIENT = "system/Patient.s"
_INCLUDES = {"DiagnosticReport:subject", "DiagnosticReport:patient"}
Query = Annotated[str | None, QueryParameter(description="see the CapabilityStatement")]
Dates = Annotated[list[str] | None, QueryParameter(description="ge|le|gt|lt|eq + ISO date")]
Count = Annotated[str | None, QueryParameter(name="_count", description="page size, ≤ 100")]


async def _rows(request: Request[Any, Any, Any], need: str) -> list[Row]:
    """The caller's searchable cases (every client's for an administrator of `need`)."""
    principal = principal_of(request)
    client = None if principal.sees_all(need) else principal.client_id
    found = await services_of(request).store.indexed_jobs(INDEX_KIND, client)
    rows = []
    for job, content in found:
        if principal.may_see(job.meta, need):
            try:
                rows.append(Row(job, json.loads(content)))
            except ValueError:
                continue
    return rows


def _query(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        query.setdefault(name, []).append(str(value))
    return query


def _applied(
    request: Request[Any, Any, Any],
    query: dict[str, list[str]],
    make: Callable[[str, list[str]], Any],
) -> tuple[list[Any], list[tuple[str, str]]]:
    """(predicates, the parameters applied) of the search; unknown ones per `handling`."""
    strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "").lower()
    predicates, applied = [], []
    for name, values in query.items():
        if name in RESULT_PARAMS:
            continue
        predicate = make(name, values)
        if predicate is None:
            if strict:
                raise BadRequest(f"unknown search parameter {name[:40]!r}", expression=[name])
            continue
        predicates.append(predicate)
        applied += [(name, value) for value in values]
    return predicates, applied


def _bundle(
    link: Callable[[int], str], total: int, count: int, offset: int, entries: list[Any]
) -> dict[str, Any]:
    links = [{"relation": "self", "url": link(offset)}]
    if count and offset + count < total:
        links.append({"relation": "next", "url": link(offset + count)})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": now_iso(),
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle


def _linker(
    base: str, kind: str, applied: list[tuple[str, str]], count: int, extra: list[Any]
) -> Callable[[int], str]:
    def link(at: int) -> str:
        query = [*applied, *extra, ("_count", str(count)), ("_offset", str(at))]
        return f"{base}/{kind}?{urlencode(query)}"

    return link


class FhirSearchController(Controller):
    """`/fhir`: search of DiagnosticReport and Patient; Patient and CodeSystem reads."""

    path = "/fhir"
    tags = ["fhir"]
    exception_handlers = FHIR_EXCEPTION_HANDLERS  # type: ignore[assignment]

    @get("/DiagnosticReport", opt={"scopes": [SEARCH_REPORT]})
    async def search_reports(
        self,
        request: Request[Any, Any, Any],
        subject: Query = None,
        patient: Query = None,
        identifier: Query = None,
        status: Query = None,
        code: Query = None,
        date: Dates = None,
        last_updated: Annotated[list[str] | None, QueryParameter(name="_lastUpdated")] = None,
        count: Count = None,
        include: Annotated[str | None, QueryParameter(name="_include")] = None,
    ) -> Response[Any]:
        """DiagnosticReports of the caller's cases as a `searchset` Bundle (paged)."""
        check_accept(request)
        base = base_url(request)
        query = _query(request)
        count_, offset = paging(query)
        predicates, applied = _applied(request, query, lambda n, v: report_filter(n, v, base))
        includes = [v for v in query.get("_include", []) if v in _INCLUDES]
        need = sc.READ_REPORT
        matches = [row for row in await _rows(request, need) if all(p(row) for p in predicates)]
        page = matches[offset : offset + count_]
        store = services_of(request).store
        entries: list[dict[str, Any]] = []
        for row in page:
            stored = await store.get_artifact(row.job.id, "fhir")
            if stored is not None:
                entries.append(
                    {
                        "fullUrl": f"{base}/DiagnosticReport/{row.job.id}",
                        "resource": json.loads(stored[1]),
                        "search": {"mode": "match"},
                    }
                )
        if includes:
            seen: set[str] = set()
            for row in page:
                person = row.index.get("patient")
                if person and person["id"] not in seen:
                    seen.add(person["id"])
                    entries.append(
                        {
                            "fullUrl": f"{base}/Patient/{person['id']}",
                            "resource": person["resource"],
                            "search": {"mode": "include"},
                        }
                    )
        extra = [("_include", value) for value in includes]
        link = _linker(base, "DiagnosticReport", applied, count_, extra)
        return fhir_response(_bundle(link, len(matches), count_, offset, entries))

    @get("/Patient", opt={"scopes": [SEARCH_PATIENT]})
    async def search_patients(
        self,
        request: Request[Any, Any, Any],
        identifier: Query = None,
        id_: Annotated[str | None, QueryParameter(name="_id")] = None,
        count: Count = None,
    ) -> Response[Any]:
        """The Patients of the caller's cases, newest first, as a `searchset` Bundle."""
        check_accept(request)
        base = base_url(request)
        query = _query(request)
        count_, offset = paging(query)
        predicates, applied = _applied(request, query, patient_filter)
        people = _patients(await _rows(request, READ_PATIENT))
        matches = [p for p in people if all(test(p) for test in predicates)]
        entries = [
            {
                "fullUrl": f"{base}/Patient/{person['id']}",
                "resource": person["resource"],
                "search": {"mode": "match"},
            }
            for person in matches[offset : offset + count_]
        ]
        link = _linker(base, "Patient", applied, count_, [])
        return fhir_response(_bundle(link, len(matches), count_, offset, entries))

    @get("/Patient/{patient_id:str}", opt={"scopes": [READ_PATIENT]})
    async def read_patient(
        self, request: Request[Any, Any, Any], patient_id: FromPath[str]
    ) -> Response[Any]:
        """A Patient of one of the caller's cases (as the newest case described it)."""
        check_accept(request)
        for person in _patients(await _rows(request, READ_PATIENT)):
            if person["id"] == patient_id:
                return fhir_response(person["resource"])
        raise NotFound(f"Patient/{patient_id[:64]} is not known")

    @get(f"/CodeSystem/{CODE_SYSTEM_ID}", opt={"public": True})
    async def read_code_system(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The project CodeSystem, served at its canonical."""
        check_accept(request)
        return fhir_response(code_system())


def _patients(rows: list[Row]) -> list[dict[str, Any]]:
    """Distinct Patients of the rows (newest case first wins)."""
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        person = row.index.get("patient")
        if isinstance(person, dict) and person.get("id") and person["id"] not in seen:
            seen[person["id"]] = person
    return list(seen.values())
