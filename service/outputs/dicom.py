"""`DicomOutput`: the report as a DICOM Encapsulated PDF instance, for every case.

A case that came as DICOM gets its report in the same study; any other case opens a new one.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from service.dicom.encapsulated_pdf import encapsulated_pdf
from service.outputs.common import report_title
from service.pipeline.case import ArtifactSink, Case, DicomOrigin
from service.pipeline.domain import Attachment, Report

DICOM = "application/dicom"


class DicomOutput:
    """Writes the `dicom` artifact."""

    def attachments(self, report: Report, case: Case) -> list[Attachment]:
        """Nothing to embed in the PDF."""
        return []

    async def write(self, report: Report, pdf: bytes, case: Case, sink: ArtifactSink) -> None:
        """Write the Encapsulated PDF (same study as a DICOM source)."""
        source = case.origin if isinstance(case.origin, DicomOrigin) else None
        instance = await asyncio.to_thread(
            encapsulated_pdf,
            pdf,
            source,
            report.patient,
            report.classification.model,
            report.narrator,
            report_title(report),
            report.language,
            dt.datetime.now(dt.UTC),
        )
        sink.put("dicom", DICOM, instance)
