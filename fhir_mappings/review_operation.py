"""The `skin-review` OperationDefinition: clinician sign-off of an AI screening report."""

from __future__ import annotations

from typing import Any

REVIEW_CODE = "review"
REVIEW_ID = "skin-review"
_DATE = "2026-12-02"


#: Stable canonical base (served locally at /fhir/OperationDefinition/skin-review).
CANONICAL_BASE = "https://skinscreen.dev/fhir"


def review_operation_url() -> str:
    """Canonical URL of the OperationDefinition (the same on every deployment)."""
    return f"{CANONICAL_BASE}/OperationDefinition/{REVIEW_ID}"


def review_capability() -> dict[str, Any]:
    """The CapabilityStatement `operation` entry."""
    return {"name": REVIEW_CODE, "definition": review_operation_url()}


def review_operation_definition() -> dict[str, Any]:
    """OperationDefinition for `DiagnosticReport/[id]/$review`."""

    def param(name: str, minimum: int, type_: str, doc: str) -> dict[str, Any]:
        return {
            "name": name,
            "use": "in",
            "min": minimum,
            "max": "1",
            "documentation": doc,
            "type": type_,
        }

    return {
        "resourceType": "OperationDefinition",
        "id": REVIEW_ID,
        "url": review_operation_url(),
        "name": "SkinReview",
        "title": "Clinician review (sign-off) of an AI skin-screening report",
        "status": "active",
        "kind": "operation",
        "date": _DATE,
        "description": "Records a clinician's review of a preliminary AI screening report and "
        "makes a new version of it: `final` with the finding's codes in conclusionCode "
        "(confirm), `amended` with the clinician's finding (revise), or `final` without a "
        "finding (not_assessable); meta.security CLINAST_AIRPT, the reviewer in "
        "resultsInterpreter and the Provenance; the PDF and DICOM outputs are re-issued and "
        "earlier versions stay readable under _history. A reviewed report may be reviewed "
        "again (an amendment).",
        "affectsState": True,
        "code": REVIEW_CODE,
        "resource": ["DiagnosticReport"],
        "system": False,
        "type": False,
        "instance": True,
        "parameter": [
            param("reviewer-name", 1, "string", "The reviewing clinician's name."),
            param("reviewer-id", 0, "string", "The clinician's identifier (e.g. a licence no.)."),
            param("decision", 1, "code", "confirm | revise | not_assessable"),
            param(
                "finding",
                0,
                "code",
                "For revise only: Acne | Carcinoma | Eczema | Keratosis | Milia | Rosacea.",
            ),
            param("comment", 0, "string", "Free-text comment, printed in the reviewed PDF."),
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "documentation": "The new version of the DiagnosticReport.",
                "type": "DiagnosticReport",
            },
        ],
    }
