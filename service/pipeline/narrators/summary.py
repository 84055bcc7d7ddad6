"""The one-paragraph summary sent in the `analysis` event and by `/api/v1/analyze`."""

from __future__ import annotations

from service.pipeline.domain import Classification, GateOutcome
from service.pipeline.narrators.content import catalog
from service.pipeline.narrators.knowledge import percent, reason_phrases
from service.pipeline.policy import candidates, review_advised


def summarize(classification: Classification, gate: GateOutcome, language: str) -> str:
    """Two or three sentences: the finding and its calibrated confidence, what it means, and
    whether urgent in-person review is advised; for a rejected photo, why it was rejected.

    It takes no patient data: age- and sex-specific notes belong to the narrative, and the
    summary (also the FHIR `conclusion`) never repeats patient data.
    """
    cat = catalog(language.replace("_", "-").split("-")[0].lower())
    text, separator = cat.text, cat.text["separator"]
    status = gate.status
    if status == "rejected":
        reasons = separator.join(reason_phrases(gate.reasons, cat.language))
        return f"{text['summary_rejected'].format(reasons=reasons)} {text['summary_retake']}"
    if status == "inconclusive":
        listing = separator.join(
            text["candidate_short"].format(name=cat.entries[lbl].short_name, confidence=percent(p))
            for lbl, p in candidates(classification)
        )
        sentences = [text["summary_inconclusive"].format(candidates=listing)]
    else:
        entry = cat.entries[classification.label]
        finding = text["summary_ok"].format(
            name=entry.short_name, confidence=percent(classification.confidence)
        )
        sentences = [finding, entry.summary]
    if review_advised(classification, gate):
        sentences.append(text["summary_urgent"])
    return " ".join(sentences)
