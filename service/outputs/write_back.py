"""`FhirWriteBack`: POST a FHIR-door case's transaction Bundle to the configured FHIR server.

Off unless `fhir_write_back` is on and a server is configured. The subject is the Patient
resolved on the server when there is one. The outcome is stored as the `fhir-write-back`
artifact; a failure is recorded, never raised, so it cannot lose the report.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.fhir_server import FhirServer
from service.logging import get_logger
from service.outputs.common import json_bytes, subject_of
from service.outputs.fhir import bundle_resource
from service.pipeline.case import ArtifactSink, Case, FhirOrigin
from service.pipeline.domain import Attachment, Report

WRITE_BACK = "fhir-write-back"
log = get_logger(__name__)


class FhirWriteBack:
    """Sends FHIR-door cases back to the EHR's FHIR server."""

    def __init__(self, server: FhirServer) -> None:
        self.server = server

    def attachments(self, report: Report, case: Case) -> list[Attachment]:
        """Nothing to embed in the PDF."""
        return []

    async def write(self, report: Report, pdf: bytes, case: Case, sink: ArtifactSink) -> None:
        """POST the Bundle and record the outcome (FHIR-door cases only)."""
        if not isinstance(case.origin, FhirOrigin):
            return
        try:
            subject = subject_of(case, on_server=True)
            bundle = await asyncio.to_thread(bundle_resource, report, case, pdf, subject)
            outcome: dict[str, Any] = (await self.server.post_transaction(bundle)).as_json()
        except Exception as error:  # a write-back failure must not lose the report
            outcome = {
                "status": "failed",
                "http_status": None,
                "entries": [],
                "error": f"write-back failed ({type(error).__name__})",
                "duration_ms": 0,
            }
        sink.put(WRITE_BACK, "application/json", json_bytes(outcome))
        emit = log.info if outcome["status"] == "succeeded" else log.warning
        emit(
            "fhir.write_back",
            job_id=case.case_id,
            status=outcome["status"],
            http_status=outcome["http_status"],
            entries=len(outcome["entries"]),
            duration_ms=outcome["duration_ms"],
        )
