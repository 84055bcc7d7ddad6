"""The one-paragraph summary sent in the `analysis` event and by `/api/v1/analyze`."""

from __future__ import annotations

from service.pipeline.domain import Classification, GateOutcome, Referral
from service.pipeline.narrators.content import Catalog, catalog
from service.pipeline.narrators.knowledge import percent, reason_phrases
from service.pipeline.policy import CARCINOMA_PROBABILITY, candidates


def summarize(
    classification: Classification, gate: GateOutcome, referral: Referral, language: str
) -> str:
    """Two to four sentences: the finding and its calibrated confidence, what it means, the
    triage decision (`referral`), and always the disclaimer; for a rejected photo, why it was
    rejected, retake advice and when to see a clinician regardless.

    When a carcinoma runner-up makes the result urgent, the top class's own (benign) summary is
    left out: a reassurance next to an urgent referral would be read first.

    It takes no patient data: age- and sex-specific notes belong to the narrative, and the
    summary (also the FHIR `conclusion`) never repeats patient data.
    """
    cat = catalog(language.replace("_", "-").split("-")[0].lower())
    text = cat.text
    if gate.status == "rejected":
        reasons = text["separator"].join(reason_phrases(gate.reasons, cat.language))
        sentences = [
            text["summary_rejected"].format(reasons=reasons),
            text["summary_retake"],
            text["rejected_see_clinician"],
        ]
        return " ".join([*sentences, text["summary_disclaimer"]])
    if gate.status == "inconclusive":
        listing = text["separator"].join(
            text["candidate_short"].format(name=cat.entries[lbl].short_name, confidence=percent(p))
            for lbl, p in candidates(classification)
        )
        sentences = [text["summary_inconclusive"].format(candidates=listing)]
    else:
        entry = cat.entries[classification.label]
        sentences = [
            text["summary_ok"].format(
                name=entry.short_name, confidence=percent(classification.confidence)
            )
        ]
        if CARCINOMA_PROBABILITY not in referral.reasons:
            sentences.append(entry.summary)
    sentences.append(triage_line(cat, referral))
    return " ".join([*sentences, text["summary_disclaimer"]])


def triage_line(cat: Catalog, referral: Referral) -> str:
    """The one sentence saying how soon to see a clinician (summary and the PDF's box)."""
    text = cat.text
    if referral.level == "urgent" and referral.runner_up:
        return text["summary_urgent_probability"].format(
            name=cat.entries[referral.runner_up].short_name,
            confidence=percent(referral.runner_up_probability or 0.0),
        )
    if referral.level == "urgent":
        return text["summary_urgent"]
    return text["summary_soon" if referral.level == "soon" else "summary_routine"]
