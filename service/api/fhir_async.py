"""The FHIR asynchronous request pattern (R4 async.html) for `$diagnose`: the status URL's
answers once the case has ended.

The completed status URL answers 200 with a `batch-response` Bundle whose one entry holds the
result (the DiagnosticReport: `response.status` 201 Created and its absolute `location`; or
the requested Bundle: 200 OK) — or, when the case failed, `response.status` with the error's
code and an OperationOutcome in `response.outcome`. A cancelled case is gone (404).
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from fhir_mappings.outcome import operation_outcome
from service.bootstrap import Services
from service.errors import NotFound, error_from_problem
from service.pipeline import events as ev
from service.store import JobRecord
from service.store.records import now_iso


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


async def batch_response(services: Services, job: JobRecord, base: str) -> dict[str, Any]:
    """The `batch-response` Bundle of a finished `$diagnose` job (404 when it was cancelled)."""
    if job.status == "cancelled":
        raise NotFound(f"$diagnose job {job.id} was cancelled")
    events = await services.store.events_after(job.id)
    last = events[-1] if events else None
    entry: dict[str, Any]
    if last is not None and last.name == ev.ERROR:
        error = error_from_problem(last.data)
        entry = {"response": {"status": _status(error.status), "outcome": operation_outcome(error)}}
    else:
        output = str(job.meta.get("output", "report"))
        stored = await services.store.get_artifact(
            job.id, "fhir-bundle" if output == "bundle" else "fhir"
        )
        if stored is None:
            raise NotFound(f"job {job.id} has no FHIR output")
        resource = json.loads(stored[1])
        if output == "bundle":
            entry = {"resource": resource, "response": {"status": _status(200)}}
        else:
            location = f"{base}/DiagnosticReport/{job.id}"
            entry = {
                "fullUrl": location,
                "resource": resource,
                "response": {"status": _status(201), "location": location},
            }
    return {
        "resourceType": "Bundle",
        "type": "batch-response",
        "timestamp": now_iso(),
        "entry": [entry],
    }
