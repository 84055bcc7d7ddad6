"""Pieces every output adapter shares: the document title, JSON bytes, the FHIR subject."""

from __future__ import annotations

import json
from typing import Any

from fhir_mappings.inbound import SubjectRef
from service.pipeline.case import Case, FhirOrigin
from service.pipeline.domain import Report
from service.report.i18n import gettext

FHIR_JSON = "application/fhir+json"


def report_title(report: Report) -> str:
    """The localized document title used in the PDF, FHIR and DICOM."""
    return gettext(report.language, "Skin screening report")


def json_bytes(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def subject_of(case: Case, *, on_server: bool = False) -> SubjectRef | None:
    """The FHIR subject a FHIR caller gave (REST and DICOM cases have none).

    `on_server`: refer to the Patient resolved on the FHIR server, when there is one.
    """
    origin = case.origin
    if not isinstance(origin, FhirOrigin):
        return None
    reference = origin.subject_reference
    if on_server and origin.server_patient:
        reference = origin.server_patient
    return SubjectRef(reference, origin.subject_resource)
