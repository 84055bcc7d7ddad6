"""JSON forms of domain objects, shared by events, REST responses and the CLI."""

from __future__ import annotations

from typing import Any

from service.pipeline.domain import (
    Classification,
    GateOutcome,
    Patient,
    Referral,
    Report,
    Review,
    SourceImage,
)
from service.pipeline.events import ClassifiedData


def classification_json(
    classification: Classification, gate: GateOutcome, referral: Referral
) -> ClassifiedData:
    """The REST/CLI classification contract (status and reasons are the one verdict, the
    gate's; `referral` the one triage decision); rejected images carry no probabilities."""
    model = classification.model.as_dict()
    if gate.status == "rejected":
        return ClassifiedData(
            status=gate.status,
            reasons=list(gate.reasons),
            label=None,
            confidence=None,
            model=model,
            referral=referral.as_json(),
        )
    data = ClassifiedData(
        status=gate.status,
        reasons=list(gate.reasons),
        label=classification.label,
        confidence=round(classification.confidence, 6),
        probabilities={k: round(v, 6) for k, v in classification.probabilities.items()},
        model=model,
        referral=referral.as_json(),
    )
    if classification.prediction_set:
        data["prediction_set"] = list(classification.prediction_set)
    return data


def gate_json(gate: GateOutcome) -> dict[str, Any]:
    """Gate outcome with its measurements rounded for display."""
    return {
        "status": gate.status,
        "reasons": list(gate.reasons),
        "measurements": {k: round(float(v), 4) for k, v in gate.measurements.items()},
    }


def patient_json(patient: Patient) -> dict[str, Any]:
    """Patient block (goes to the client that sent it; never to logs)."""
    return {
        "name": patient.name,
        "age": patient.age,
        "sex": patient.sex,
        "birth_date": patient.birth_date,
        "identifier": patient.identifier,
    }


def source_json(source: SourceImage) -> dict[str, Any]:
    """Source image description."""
    body: dict[str, Any] = {
        "media_type": source.media_type,
        "sha256": source.sha256,
        "width": source.width,
        "height": source.height,
    }
    if source.dicom:
        body["dicom"] = dict(source.dicom)
    if source.fhir_reference:
        body["fhir_reference"] = source.fhir_reference
    return body


def report_json(report: Report) -> dict[str, Any]:
    """The full structured report (`report.completed` payload and GET /api/v1/reports/{id})."""
    return {
        "case_id": report.case_id,
        "language": report.language,
        "created_at": report.created_at,
        "patient": patient_json(report.patient),
        "history": report.history,
        "source": source_json(report.source),
        "gate": gate_json(report.gate),
        "classification": classification_json(report.classification, report.gate, report.referral),
        "summary": report.summary,
        "sections": dict(report.sections),
        "narrative": report.narrative,
        "narrator": {**report.narrator.as_dict(), "without_llm": report.generated_without_llm},
        "referral": report.referral.as_json(),
        #: Kept for clients of the first release: `referral.level == "urgent"`.
        "urgent_referral": report.referral.level == "urgent",
        "notices": list(report.notices),
        "version": report.version,
        "review": review_json(report.review) if report.review else None,
        "earlier_reviews": [review_json(r) for r in report.earlier_reviews],
    }


def review_json(review: Review) -> dict[str, Any]:
    """A clinician review as the report JSON and the `report.reviewed` event carry it (the
    recording client is audit data and stays out)."""
    return {
        "reviewer": {"name": review.reviewer, "id": review.reviewer_id},
        "decision": review.decision,
        "finding": review.finding,
        "comment": review.comment,
        "reviewed_at": review.reviewed_at,
        "version": review.version,
    }
