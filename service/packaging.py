"""Output packagers: what a finished report becomes besides the PDF.

- `FhirPackager`: the FHIR R4 DiagnosticReport (self-contained, PDF inline) and, for FHIR
  callers asking `output=bundle`, the transaction Bundle; a copy of the DiagnosticReport
  (without the PDF it is embedded in) goes into the PDF/A-3 as an associated file. With
  `fhir_write_back` on, a FHIR-door case's transaction Bundle is POSTed to the FHIR server and
  the outcome stored as `fhir-write-back` (a failure is recorded, never raised).
- `DicomPackager`: the DICOM Encapsulated PDF, for every case (same study when the photo came
  as DICOM, a new study otherwise).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fhir_mappings.inbound import SubjectRef
from fhir_mappings.outbound import PdfDocument, diagnostic_report, transaction_bundle
from service.fhir_client import post_transaction
from service.logging import get_logger
from service.pipeline.case import ArtifactSink, CaseInput
from service.pipeline.domain import Report
from service.report.i18n import gettext
from service.report.pdf import Attachment
from service.settings import Settings

FHIR_JSON = "application/fhir+json"
DICOM = "application/dicom"
WRITE_BACK = "fhir-write-back"

log = get_logger(__name__)


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

    @property
    def writes_back(self) -> bool:
        """Write-back is on and a FHIR server is configured."""
        return self.settings.fhir_write_back and bool(self.settings.fhir_server_url)

    def _bundle(
        self, report: Report, case: CaseInput, pdf: bytes, subject: SubjectRef | None
    ) -> dict[str, Any]:
        return transaction_bundle(
            report,
            conclusion=report.summary,
            pdf=PdfDocument(data=pdf, title=report_title(report), language=report.language),
            subject=subject,
            image=case.image.source if case.source.media_type != DICOM else None,
        )

    def package(self, report: Report, pdf: bytes, case: CaseInput, sink: ArtifactSink) -> None:
        """Store the DiagnosticReport and, when asked, the transaction Bundle; write back."""
        sink.put("fhir", FHIR_JSON, _json(self._report(report, case, pdf)))
        if case.origin.get("fhir_output") == "bundle":
            sink.put(
                "fhir-bundle", FHIR_JSON, _json(self._bundle(report, case, pdf, subject_of(case)))
            )
        if self.writes_back and "fhir_output" in case.origin:
            self.write_back(report, pdf, case, sink)

    def write_back(self, report: Report, pdf: bytes, case: CaseInput, sink: ArtifactSink) -> None:
        """POST the transaction Bundle (subject: the server Patient when resolved) and record
        the outcome as the `fhir-write-back` artifact."""
        subject = subject_of(case)
        server_patient = case.origin.get("fhir_server_patient")
        if isinstance(server_patient, str) and subject is not None:
            subject = SubjectRef(server_patient, subject.resource)
        try:
            result = post_transaction(self._bundle(report, case, pdf, subject), self.settings)
            outcome = result.as_json()
        except Exception as error:  # a write-back failure must not lose the report
            outcome = {
                "status": "failed",
                "http_status": None,
                "entries": [],
                "error": f"write-back failed ({type(error).__name__})",
                "duration_ms": 0,
            }
        sink.put(WRITE_BACK, "application/json", _json(outcome))
        emit = log.info if outcome["status"] == "succeeded" else log.warning
        emit(
            "fhir.write_back",
            job_id=case.case_id,
            status=outcome["status"],
            http_status=outcome["http_status"],
            entries=len(outcome["entries"]),
            duration_ms=outcome["duration_ms"],
        )


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
