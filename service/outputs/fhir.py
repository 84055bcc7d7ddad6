"""`FhirOutput`: the FHIR R4 DiagnosticReport of every case, and the Bundle when asked."""

from __future__ import annotations

import asyncio
from typing import Any

from fhir_mappings.inbound import SubjectRef
from fhir_mappings.outbound import PdfDocument, diagnostic_report, transaction_bundle
from fhir_mappings.search_index import INDEX_KIND, report_index
from service.outputs.common import FHIR_JSON, json_bytes, report_title, subject_of
from service.pipeline.case import ArtifactSink, Case, FhirOrigin
from service.pipeline.domain import Attachment, Report


def pdf_document(report: Report, pdf: bytes) -> PdfDocument:
    """The PDF as the FHIR mappings describe it."""
    return PdfDocument(data=pdf, title=report_title(report), language=report.language)


def report_resource(report: Report, case: Case, pdf: bytes) -> dict[str, Any]:
    """The self-contained DiagnosticReport (PDF inline in presentedForm)."""
    return diagnostic_report(
        report,
        conclusion=report.summary,
        pdf=pdf_document(report, pdf),
        subject=subject_of(case),
        report_id=case.case_id,
    )


def bundle_resource(
    report: Report, case: Case, pdf: bytes, subject: SubjectRef | None
) -> dict[str, Any]:
    """The transaction Bundle (the photo goes along unless it came as DICOM)."""
    return transaction_bundle(
        report,
        conclusion=report.summary,
        pdf=pdf_document(report, pdf),
        subject=subject,
        image=None if case.is_dicom else case.data,
    )


class FhirOutput:
    """DiagnosticReport (+ transaction Bundle for `output=bundle`) for each finished case."""

    def attachments(self, report: Report, case: Case) -> list[Attachment]:
        """The DiagnosticReport JSON to embed in the PDF (its presentedForm is the PDF itself,
        so the embedded copy leaves presentedForm out)."""
        resource = report_resource(report, case, b"")
        resource.pop("presentedForm", None)
        return [
            Attachment(
                filename="diagnostic-report.fhir.json",
                content=json_bytes(resource),
                mime=FHIR_JSON,
                description="FHIR R4 DiagnosticReport of this report (without presentedForm)",
                relationship="Data",
            )
        ]

    async def write(self, report: Report, pdf: bytes, case: Case, sink: ArtifactSink) -> None:
        """Store the DiagnosticReport (with its search index) and, when the FHIR caller asked,
        the Bundle."""
        resource = await asyncio.to_thread(report_resource, report, case, pdf)
        sink.put("fhir", FHIR_JSON, json_bytes(resource))
        patient = case.origin.subject_resource if isinstance(case.origin, FhirOrigin) else None
        sink.put(INDEX_KIND, "application/json", json_bytes(report_index(resource, patient)))
        if isinstance(case.origin, FhirOrigin) and case.origin.output == "bundle":
            bundle = await asyncio.to_thread(bundle_resource, report, case, pdf, subject_of(case))
            sink.put("fhir-bundle", FHIR_JSON, json_bytes(bundle))
