"""The one parser of a clinician review, for the REST body and the FHIR `$review` Parameters.

Both doors turn their wire format into the same mapping (`reviewer.name`, `reviewer.id`,
`decision`, `finding`, `comment`) and call `parse_review`, which applies every rule once:
a reviewer name is required, `revise` needs a class and `confirm` / `not_assessable` take none,
text fields are bounded and free of control characters.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from service.errors import Unprocessable
from service.pipeline.domain import CLASSES, REVIEW_DECISIONS, ReviewDecision

MAX_REVIEWER_CHARS = 200
MAX_REVIEWER_ID_CHARS = 64
MAX_COMMENT_CHARS = 2000


@dataclass(frozen=True)
class ReviewInput:
    """A validated review as a clinician submitted it."""

    reviewer: str
    decision: ReviewDecision
    finding: str | None
    reviewer_id: str | None = None
    comment: str | None = None


def _invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(
        f"{field}: {message}", expression=[field], errors=[{"field": field, "message": message}]
    )


def _text(value: Any, field: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _invalid(field, "is required")
        return None
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    text = unicodedata.normalize("NFC", value.strip())
    if len(text) > limit:
        raise _invalid(field, f"at most {limit} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise _invalid(field, "contains control characters")
    return text


def parse_review(body: Any) -> ReviewInput:
    """Validate a review mapping (raises 422 with the offending field)."""
    if not isinstance(body, dict):
        raise Unprocessable("the review must be a JSON object")
    reviewer = body.get("reviewer")
    if not isinstance(reviewer, dict):
        raise _invalid("reviewer", "an object with a name (and an optional id) is required")
    name = _text(reviewer.get("name"), "reviewer.name", MAX_REVIEWER_CHARS, required=True)
    reviewer_id = _text(reviewer.get("id"), "reviewer.id", MAX_REVIEWER_ID_CHARS)
    decision = body.get("decision")
    if decision not in REVIEW_DECISIONS:
        raise _invalid("decision", f"one of {', '.join(REVIEW_DECISIONS)}")
    finding = body.get("finding")
    if decision == "revise":
        if finding not in CLASSES:
            raise _invalid("finding", f"a revision names the class: one of {', '.join(CLASSES)}")
    elif finding is not None:
        raise _invalid("finding", f"only a revision names a class (decision is {decision})")
    comment = _text(body.get("comment"), "comment", MAX_COMMENT_CHARS)
    assert name is not None  # required above
    return ReviewInput(
        reviewer=name,
        decision=decision,
        finding=finding if decision == "revise" else None,
        reviewer_id=reviewer_id,
        comment=comment,
    )
