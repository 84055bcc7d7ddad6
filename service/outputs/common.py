"""Pieces every output adapter shares: the document title, JSON bytes, the FHIR subject."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from fhir_mappings import codes
from fhir_mappings.inbound import SubjectRef
from service.pipeline.case import Case, DicomOrigin, FhirOrigin
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
    """The FHIR subject: the one a FHIR caller gave, or for a DICOM case the patient of its
    Patient module as a logical reference (Patient ID + Issuer of Patient ID as identifier,
    the name as display). REST uploads have none.

    `on_server`: refer to the Patient resolved on the FHIR server, when there is one.
    """
    origin = case.origin
    if isinstance(origin, DicomOrigin):
        return dicom_subject(case)
    if not isinstance(origin, FhirOrigin):
        return None
    reference = origin.subject_reference
    if on_server and origin.server_patient:
        reference = origin.server_patient
    return SubjectRef(reference, origin.subject_resource)


#: Identifier system of a DICOM Patient ID (Issuer of Patient ID appended when given and not
#: itself a URI).
DICOM_PATIENT_ID = f"{codes.PROJECT_SID}/dicom-patient-id"


def dicom_subject(case: Case) -> SubjectRef | None:
    """A Patient resource (never stored, only referred to) from a DICOM case's patient."""
    patient = case.patient
    if not (patient.identifier or patient.name):
        return None
    resource: dict[str, Any] = {"resourceType": "Patient"}
    if patient.identifier:
        modules = case.origin.modules if isinstance(case.origin, DicomOrigin) else {}
        issuer = (modules.get("IssuerOfPatientID") or "").strip()
        if issuer.startswith(("urn:", "http://", "https://")):
            system = issuer
        elif issuer:
            system = f"{DICOM_PATIENT_ID}/{urllib.parse.quote(issuer, safe='')}"
        else:
            system = DICOM_PATIENT_ID
        resource["identifier"] = [{"system": system, "value": patient.identifier}]
    if patient.name:
        resource["name"] = [{"text": patient.name}]
    return SubjectRef(None, resource)
