"""The project's own CodeSystem (`codes.PROJECT`), served at its canonical."""

from __future__ import annotations

from typing import Any

from fhir_mappings import codes
from service.pipeline.domain import CLASSES

CODE_SYSTEM_ID = codes.PROJECT.rsplit("/", 1)[1]


def code_system() -> dict[str, Any]:
    """CodeSystem `skin-condition`: the classifier's classes and the report's code/category."""
    concepts = [
        {"code": coding["code"], "display": coding["display"]}
        for coding in (codes.condition_concept(label)["coding"][0] for label in CLASSES)
    ]
    for concept in (codes.REPORT_CODE, codes.REPORT_CATEGORY):
        coding = concept["coding"][0]
        concepts.append({"code": coding["code"], "display": coding["display"]})
    return {
        "resourceType": "CodeSystem",
        "id": CODE_SYSTEM_ID,
        "url": codes.PROJECT,
        "name": "SkinCondition",
        "title": "skinscreen skin conditions and report codes",
        "status": "active",
        "experimental": False,
        "date": "2025-01-01",
        "publisher": "skinscreen",
        "description": "The six classes of the AI skin classifier, the AI screening report's "
        "code and its category. Used where no verified SNOMED CT / ICD-10 / LOINC code exists "
        "(see the README's code table); never a diagnosis.",
        "caseSensitive": True,
        "content": "complete",
        "count": len(concepts),
        "concept": concepts,
    }
