"""Source-language labels for machine codes (classes, gate reasons, sections, sex).

Each string is wrapped in `N_` so `pybabel extract` puts it in `messages.pot`; the
translation happens at render time with the report's language.
"""

from __future__ import annotations

from collections.abc import Mapping


def N_(message: str) -> str:
    """Mark a string for extraction without translating it."""
    return message


CLASS_LABELS: Mapping[str, str] = {
    "Acne": N_("Acne"),
    "Carcinoma": N_("Carcinoma"),
    "Eczema": N_("Eczema"),
    "Keratosis": N_("Keratosis"),
    "Milia": N_("Milia"),
    "Rosacea": N_("Rosacea"),
}

STATUS_LABELS: Mapping[str, str] = {
    "ok": N_("Passed"),
    "inconclusive": N_("Inconclusive"),
    "rejected": N_("Rejected"),
}

#: Codes of service.pipeline.gate / screening (and aliases the web page shares).
REASON_LABELS: Mapping[str, str] = {
    "too_small": N_("The image resolution is too low."),
    "too_dark": N_("The image is too dark."),
    "overexposed": N_("The image is overexposed."),
    "too_bright": N_("The image is overexposed."),
    "blurred": N_("The image is blurred."),
    "grayscale": N_("The image has almost no colour (greyscale)."),
    "low_detail": N_("The image shows too little detail."),
    "not_skin": N_("The image does not appear to show skin."),
    "out_of_distribution": N_("The image differs from the images the model was trained on."),
    "low_confidence": N_("The model's confidence is low."),
    "ambiguous": N_("Two conditions are almost equally likely."),
    "low_margin": N_("Two conditions are almost equally likely."),
    "several_conditions": N_("Several conditions cannot be ruled out."),
    "unusual_image": N_("The image is unusual for the model, so its result is uncertain."),
}

SECTION_LABELS: Mapping[str, str] = {
    "observations": N_("Observations"),
    "differential": N_("Differential diagnosis"),
    "red_flags": N_("Warning signs"),
    "recommendations": N_("Recommendations"),
    "follow_up": N_("Follow-up"),
}

SEX_LABELS: Mapping[str, str] = {
    "female": N_("Female"),
    "male": N_("Male"),
    "other": N_("Other"),
    "unknown": N_("Unknown"),
}

NOTICE_LABELS: Mapping[str, str] = {
    "narrator_fallback": N_(
        "The language model was unavailable; curated reference content was used instead."
    ),
    "narrator_truncated": N_("The language model's text was cut short."),
    "narrative_repaired": N_(
        "Parts of the language model's text were replaced with standard wording by the safety "
        "check."
    ),
}

#: Shown when a free-text field was clipped before layout (service.report.text).
SHORTENED = N_("Some text was too long for the report: %(count)s characters are not shown.")

#: Placeholders are python-format so translators can reorder them.
PAGE_OF = N_("Page %(page)s of %(pages)s")
