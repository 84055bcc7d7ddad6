"""Output packagers: what a finished report becomes besides the PDF.

- `FhirPackager`: the FHIR R4 DiagnosticReport (self-contained, PDF inline) and, for FHIR
  callers asking `output=bundle`, the transaction Bundle; a copy of the DiagnosticReport
  (without the PDF it is embedded in) goes into the PDF/A-3 as an associated file.
- `DicomPackager`: the DICOM Encapsulated PDF, for every case (same study when the photo came
  as DICOM, a new study otherwise).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fhir_mappings.inbound import SubjectRef
from fhir_mappings.outbound import PdfDocument, diagnostic_report, transaction_bundle
from service.pipeline.case import ArtifactSink, CaseInput
from service.pipeline.domain import Report
from service.report.i18n import gettext
from service.report.pdf import Attachment
from service.settings import Settings

FHIR_JSON = "application/fhir+json"
DICOM = "application/dicom"


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def report_title(report: Report) -> str:
    """The localized document title used in the PDF, FHIR and DICOM."""
    return gettext(report.language, "Skin screening report")


def subject_of(case: CaseInput) -> SubjectRef | None:
    """The FHIR subject a FHIR caller gave; REST uploads have none."""
    subject = case.origin.get("fhir_subject")
    return subject if isinstance(subject, SubjectRef) else None


class FhirPackager:
    """DiagnosticReport (+ transaction Bundle on request) for each finished case."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _report(self, report: Report, case: CaseInput, pdf: bytes) -> dict[str, Any]:
        return diagnostic_report(
            report,
            conclusion=report.summary,
            pdf=PdfDocument(data=pdf, title=report_title(report), language=report.language),
            subject=subject_of(case),
            report_id=case.case_id,
        )

    def attachments(self, report: Report, case: CaseInput) -> list[Any]:
        """The DiagnosticReport JSON to embed in the PDF (its presentedForm is the PDF itself,
        so the embedded copy leaves presentedForm out)."""
        resource = self._report(report, case, b"")
        resource.pop("presentedForm", None)
        return [
            Attachment(
                filename="diagnostic-report.fhir.json",
                content=_json(resource),
                mime=FHIR_JSON,
                description="FHIR R4 DiagnosticReport of this report (without presentedForm)",
                relationship="Data",
            )
        ]

    def package(self, report: Report, pdf: bytes, case: CaseInput, sink: ArtifactSink) -> None:
        """Store the DiagnosticReport and, when asked, the transaction Bundle."""
        sink.put("fhir", FHIR_JSON, _json(self._report(report, case, pdf)))
        if case.origin.get("fhir_output") == "bundle":
            bundle = transaction_bundle(
                report,
                conclusion=report.summary,
                pdf=PdfDocument(data=pdf, title=report_title(report), language=report.language),
                subject=subject_of(case),
                image=case.image.source if case.source.media_type != DICOM else None,
            )
            sink.put("fhir-bundle", FHIR_JSON, _json(bundle))


class DicomPackager:
    """The report as a DICOM Encapsulated PDF instance."""

    def attachments(self, report: Report, case: CaseInput) -> list[Any]:
        """Nothing to embed in the PDF."""
        return []

    def package(self, report: Report, pdf: bytes, case: CaseInput, sink: ArtifactSink) -> None:
        """Write the Encapsulated PDF (same study as a DICOM source)."""
        from service.report.dicom_pdf import encapsulated_pdf

        instance = encapsulated_pdf(
            pdf,
            case.origin.get("dicom"),
            report.patient,
            report.classification.model,
            report.narrator,
            report_title(report),
            report.language,
            dt.datetime.now(dt.UTC),
        )
        sink.put("dicom", DICOM, instance)
