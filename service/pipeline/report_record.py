"""A lossless JSON record of a `Report` (stored with each case) and its inverse.

The public report JSON (`report_json`) rounds and leaves things out (a rejected photo's
probabilities, patient extras); a clinician review re-renders the PDF and re-issues the FHIR and
DICOM outputs from the report exactly as it was, so the store keeps this record beside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from service.pipeline.domain import (
    Classification,
    GateOutcome,
    ModelInfo,
    Patient,
    Referral,
    Report,
    Review,
    SourceImage,
)

RECORD_VERSION = 1


def report_record(report: Report) -> bytes:
    """UTF-8 JSON of every field of `report`."""
    return json.dumps({"record": RECORD_VERSION, **asdict(report)}, ensure_ascii=False).encode()


def report_from_record(data: bytes) -> Report:
    """The `Report` a `report_record` was made from (raises ValueError on another format)."""
    doc: dict[str, Any] = json.loads(data)
    if doc.pop("record", None) != RECORD_VERSION:
        raise ValueError("not a report record of a known version")
    classification = doc["classification"]
    return Report(
        case_id=doc["case_id"],
        language=doc["language"],
        patient=Patient(**doc["patient"]),
        history=doc["history"],
        source=SourceImage(**doc["source"]),
        classification=Classification(
            probabilities=classification["probabilities"],
            model=ModelInfo(**classification["model"]),
            prediction_set=tuple(classification.get("prediction_set") or ()),
        ),
        gate=GateOutcome(
            status=doc["gate"]["status"],
            reasons=tuple(doc["gate"]["reasons"]),
            measurements=doc["gate"]["measurements"],
        ),
        summary=doc["summary"],
        sections=doc["sections"],
        narrative=doc["narrative"],
        narrator=ModelInfo(**doc["narrator"]),
        generated_without_llm=doc["generated_without_llm"],
        referral=_referral(doc["referral"]),
        created_at=doc["created_at"],
        notices=tuple(doc["notices"]),
        review=_review(doc["review"]) if doc.get("review") else None,
        earlier_reviews=tuple(_review(r) for r in doc.get("earlier_reviews") or ()),
    )


def _referral(doc: dict[str, Any]) -> Referral:
    return Referral(**{**doc, "reasons": tuple(doc["reasons"])})


def _review(doc: dict[str, Any]) -> Review:
    return Review(**doc)
