"""Relative links to a case's outputs (the doors turn them into absolute URLs if needed)."""

from __future__ import annotations


def case_links(case_id: str) -> dict[str, str]:
    """Where each output of a finished case can be fetched."""
    return {
        "report": f"/api/v1/reports/{case_id}",
        "pdf": f"/api/v1/reports/{case_id}.pdf",
        "fhir": f"/fhir/DiagnosticReport/{case_id}",
        "events": f"/api/v1/jobs/{case_id}/events",
        "job": f"/api/v1/jobs/{case_id}",
        "dicom": f"/api/v1/reports/{case_id}.dcm",
    }
