"""Turn a `Report` into the display values the report template needs (all localized)."""

from __future__ import annotations

import re
from typing import Any

from babel.support import Translations

from service.pipeline.domain import CLASSES, REPORT_SECTIONS, ModelInfo, Report
from service.pipeline.narrators.content import catalog
from service.pipeline.narrators.summary import triage_line
from service.report.i18n import format_datetime_local
from service.report.labels import (
    CLASS_LABELS,
    NOTICE_LABELS,
    REASON_LABELS,
    SECTION_LABELS,
    SEX_LABELS,
    SHORTENED,
    STATUS_LABELS,
)
from service.report.markup import render_markdownish
from service.report.text import TextLimits, clip, shape

MISSING = "—"
#: DICOM identifiers shown in the PDF: label and the normalized keys they may arrive under.
_DICOM_UIDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Study Instance UID", ("studyinstanceuid", "studyuid", "study")),
    ("Series Instance UID", ("seriesinstanceuid", "seriesuid", "series")),
    ("SOP Instance UID", ("sopinstanceuid", "sopuid", "sop")),
)


def _model(info: ModelInfo) -> dict[str, str]:
    return {"name": info.name, "version": info.version, "sha256": info.sha256[:12] or MISSING}


def _dicom_uids(dicom: dict[str, str]) -> list[tuple[str, str]]:
    normalized = {re.sub(r"[^a-z]", "", key.lower()): value for key, value in dicom.items()}
    found = []
    for label, keys in _DICOM_UIDS:
        value = next((normalized[key] for key in keys if normalized.get(key)), None)
        if value:
            found.append((label, value))
    return found


class _Shaper:
    """Clips and breaks every free-text field, counting what was left out."""

    def __init__(self, limits: TextLimits) -> None:
        self.limits = limits
        self.omitted = 0

    def __call__(self, text: str, limit: int, *, breaks: bool = True) -> str:
        shaped = shape(text, limit) if breaks else clip(text, limit)
        self.omitted += shaped.omitted
        return shaped.text


def _shortened(omitted: int, t: Translations) -> list[str]:
    if not omitted:
        return []
    return [t.gettext(SHORTENED) % {"count": omitted}]


def report_context(
    report: Report, t: Translations, limits: TextLimits | None = None
) -> dict[str, Any]:
    """Everything `report.html` renders, except the images (free text shaped for layout)."""
    _ = t.gettext
    text = _Shaper(limits or TextLimits())
    sizes = text.limits
    probabilities = report.classification.probabilities
    top = report.classification.label
    rows = [
        {
            "label": _(CLASS_LABELS.get(code, code)),
            "probability": probabilities.get(code, 0.0),
            "width": f"{max(0.0, min(1.0, probabilities.get(code, 0.0))) * 100:.1f}",
            "top": code == top,
        }
        for code in sorted(CLASSES, key=lambda c: -probabilities.get(c, 0.0))
    ]
    status = report.gate.status
    reason_codes = dict.fromkeys(report.gate.reasons)
    patient = report.patient
    return {
        "report": report,
        "referral": referral_box(report),
        "review": review_block(report),
        "created": format_datetime_local(report.created_at, report.language),
        "patient": {
            "name": text(patient.name, sizes.name) if patient.name else MISSING,
            "age": patient.age,
            "sex": _(SEX_LABELS[patient.sex]) if patient.sex else MISSING,
            "history": text(report.history, sizes.history) if report.history else MISSING,
        },
        "source": {
            "width": report.source.width,
            "height": report.source.height,
            "media_type": report.source.media_type,
            "sha256": report.source.sha256[:16] or MISSING,
            "dicom": [  # UIDs get copied: clipped, never given zero-width spaces (CSS breaks them)
                (k, text(v, sizes.value, breaks=False)) for k, v in _dicom_uids(report.source.dicom)
            ],
        },
        "rows": rows,
        "gate": {
            "status": status,
            "label": _(STATUS_LABELS[status]),
            "reasons": [_(REASON_LABELS[c]) if c in REASON_LABELS else c for c in reason_codes],
        },
        "summary_html": render_markdownish(text(report.summary, sizes.section)),
        "sections": [
            {
                "title": _(SECTION_LABELS[key]),
                "html": render_markdownish(text(report.sections[key], sizes.section)),
            }
            for key in REPORT_SECTIONS
            if report.sections.get(key, "").strip()
        ],
        "notices": [_(NOTICE_LABELS[n]) if n in NOTICE_LABELS else n for n in report.notices]
        + _shortened(text.omitted, t),
        "models": [
            (_("Classifier"), _model(report.classification.model)),
            (_("Report writer"), _model(report.narrator)),
        ],
    }


def referral_box(report: Report) -> dict[str, str] | None:
    """Title and line of the referral box (urgent: red, soon: amber; none when routine)."""
    level = report.referral.level
    if level == "routine":
        return None
    cat = catalog(report.language)
    line = triage_line(cat, report.referral)
    return {"level": level, "title": cat.text[f"referral_{level}"], "text": line}


def review_block(report: Report) -> dict[str, Any]:
    """The review status: pending (an unreviewed AI result) or who signed it, when, and how."""
    cat = catalog(report.language)
    review = report.review
    if review is None:
        return {"pending": True, "title": cat.text["review_pending"], "lines": []}
    who = review.reviewer + (f" ({review.reviewer_id})" if review.reviewer_id else "")
    when = format_datetime_local(review.reviewed_at, report.language)
    if review.decision == "revise" and review.finding:
        decision = cat.text["review_revise"].format(name=cat.entries[review.finding].name)
    else:
        decision = cat.text[f"review_{review.decision}"]
    lines = [decision]
    if review.comment:
        lines.append(cat.text["reviewer_comment"].format(comment=review.comment))
    return {
        "pending": False,
        "title": cat.text["review_block"].format(reviewer=who, date=when),
        "lines": lines,
        "version": review.version,
    }
