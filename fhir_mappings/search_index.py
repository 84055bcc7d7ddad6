"""The small search index of a finished case, written with its DiagnosticReport.

`report_index(report, patient)` keeps what DiagnosticReport and Patient search read (status,
dates, code and identifier tokens, the subject, the Patient) so a search never parses reports.
A Patient is addressable when the subject is `Patient/<id>`; otherwise, when the request
carried a Patient with an identifier, its id is derived from that identifier (stable across
cases), and the Patient resource is the one the request carried.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

INDEX_KIND = "fhir-index"
VERSION = 1
_PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})")


def _tokens(codings: list[Any]) -> list[dict[str, str]]:
    out = []
    for coding in codings:
        if isinstance(coding, dict) and coding.get("value", coding.get("code")):
            token = {"value": str(coding.get("value", coding.get("code")))}
            if coding.get("system"):
                token["system"] = str(coding["system"])
            out.append(token)
    return out


def patient_id(reference: str | None, resource: dict[str, Any] | None) -> str | None:
    """The id our Patient has: the subject's `Patient/<id>`, else one derived from the first
    identifier of the Patient the request carried, else None (not addressable)."""
    if reference and (match := _PATIENT_REF.fullmatch(reference)):
        return match[1]
    identifiers = _tokens((resource or {}).get("identifier") or [])
    if not identifiers:
        return None
    first = identifiers[0]
    digest = hashlib.sha256(f"{first.get('system', '')}|{first['value']}".encode()).hexdigest()
    return f"p-{digest[:32]}"


def _patient(reference: str | None, resource: dict[str, Any] | None) -> dict[str, Any] | None:
    pid = patient_id(reference, resource)
    if pid is None:
        return None
    body = {k: v for k, v in (resource or {}).items() if k not in ("resourceType", "id", "meta")}
    return {
        "id": pid,
        "identifier": _tokens(body.get("identifier") or []),
        "resource": {"resourceType": "Patient", "id": pid, **body},
    }


def report_index(report: dict[str, Any], patient: dict[str, Any] | None) -> dict[str, Any]:
    """The index of one DiagnosticReport (`patient`: the Patient resource the request carried)."""
    subject = (report.get("subject") or {}).get("reference")
    return {
        "v": VERSION,
        "status": report.get("status"),
        "date": report.get("effectiveDateTime"),
        "issued": report.get("issued"),
        "code": _tokens((report.get("code") or {}).get("coding") or []),
        "identifier": _tokens(report.get("identifier") or []),
        "subject": subject,
        "patient": _patient(subject, patient),
    }
