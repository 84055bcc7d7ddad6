"""The curated content files agree across languages and keep the clinical-safety wording."""

from __future__ import annotations

import json
import re
import string
from importlib import resources
from typing import Any

import pytest

from service.pipeline.domain import CLASSES, LANGUAGES
from service.pipeline.narrators.content import catalog
from service.report.i18n import gettext

#: Text templates other modules format; each must exist in every language.
REQUIRED_TEXT = {
    "summary_disclaimer": set(),
    "summary_urgent_probability": {"name", "confidence"},
    "summary_soon": set(),
    "summary_routine": set(),
    "rejected_see_clinician": set(),
    "referral_urgent": set(),
    "referral_soon": set(),
    "referral_routine": set(),
    "review_block": {"reviewer", "date"},
    "review_pending": set(),
    "review_confirm": set(),
    "review_revise": {"name"},
    "review_not_assessable": set(),
    "reviewer_comment": {"comment"},
    "banner": {"version"},
    "summary_urgent": set(),
}
#: Reassurance ("harmless", "needs no treatment") and the clinician who must confirm it first.
REASSURANCE = {
    "en": (re.compile(r"harmless|no treatment|not needed|without treatment", re.I), "clinician"),
    "ko": (re.compile(r"무해|치료가 필요 없|필요하지 않|치료 없이"), "임상의"),
    "vi": (re.compile(r"không cần điều trị|không cần theo dõi|lành tính và", re.I), "bác sĩ"),
}
#: Steroid creams come only after the clinician has excluded tinea and scabies.
STEROID = {
    "en": ("corticosteroid", ("exclude", "tinea", "scabies")),
    "ko": ("코르티코스테로이드", ("배제", "백선", "옴")),
    "vi": ("corticosteroid", ("loại trừ", "nấm", "ghẻ")),
}
PIGMENTED_BCC = {"en": "Pigmented BCC", "ko": "색소성 기저세포암", "vi": "BCC thể sắc tố"}
URGENT_APPOINTMENT = {
    "en": "urgent appointment with a dermatologist or skin-cancer service",
    "ko": "피부암 진료 기관에 긴급 진료",
    "vi": "đặt lịch khám khẩn với bác sĩ da liễu hoặc cơ sở chuyên khoa ung thư da",
}
DOSE = re.compile(r"\d\s*(?:mg|mcg|µg|ml|%)|\b(?:once|twice) daily\b", re.I)


def raw(language: str) -> dict[str, Any]:
    files = resources.files("service.pipeline.narrators.content")
    data: dict[str, Any] = json.loads((files / f"{language}.json").read_text("utf-8"))
    return data


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def class_texts(language: str, label: str) -> list[str]:
    entry = catalog(language).entries[label]
    texts = [entry.summary, entry.description, entry.follow_up]
    texts += [*entry.features, *entry.differential, *entry.red_flags, *entry.recommendations]
    return [*texts, *entry.age_notes.values(), *entry.sex_notes.values()]


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogs_have_the_same_keys_and_placeholders(language: str) -> None:
    en, other = raw("en"), raw(language)
    assert other["language"] == language
    assert set(other["text"]) == set(en["text"])
    assert set(other["reasons"]) == set(en["reasons"])
    assert set(other["classes"]) == set(en["classes"]) == set(CLASSES)
    assert set(other["general"]["inconclusive"]) == set(en["general"]["inconclusive"])
    for key, items in en["general"]["inconclusive"].items():
        assert len(other["general"]["inconclusive"][key]) == len(items), key
    assert len(other["general"]["retake"]) == len(en["general"]["retake"])
    for key, template in en["text"].items():
        assert placeholders(other["text"][key]) == placeholders(template), key
        assert other["text"][key].strip(), key
    for key, expected in REQUIRED_TEXT.items():
        assert placeholders(other["text"][key]) == expected, key
    for label in CLASSES:  # class texts are never formatted: a brace would be a typo
        assert not any("{" in t or "}" in t for t in class_texts(language, label)), label


@pytest.mark.parametrize("language", LANGUAGES)
def test_reassurance_is_conditional_on_clinician_confirmation(language: str) -> None:
    claim, clinician = REASSURANCE[language]
    found = 0
    for label in CLASSES:
        for text in class_texts(language, label):
            for clause in re.split(r"[.;]\s", text):
                if claim.search(clause):
                    found += 1
                    assert clinician in clause, (label, clause)
    assert found >= 5  # the milia and seborrhoeic-keratosis reassurances are still there


@pytest.mark.parametrize("language", LANGUAGES)
def test_steroid_creams_only_after_tinea_and_scabies_are_excluded(language: str) -> None:
    steroid, exclusions = STEROID[language]
    advice = [r for r in catalog(language).entries["Eczema"].recommendations if steroid in r]
    assert len(advice) == 1
    assert all(word in advice[0] for word in exclusions), advice[0]
    for label in CLASSES:
        assert not any(DOSE.search(t) for t in class_texts(language, label)), label


@pytest.mark.parametrize("language", LANGUAGES)
def test_carcinoma_names_pigmented_bcc_and_a_neutral_urgent_route(language: str) -> None:
    entry = catalog(language).entries["Carcinoma"]
    assert any(f.startswith(PIGMENTED_BCC[language]) for f in entry.features)
    assert URGENT_APPOINTMENT[language] in entry.recommendations[0]
    assert "suspected-cancer" not in " ".join(class_texts(language, "Carcinoma"))


def test_translated_terms_are_the_clinically_correct_ones() -> None:
    vi = " ".join(t for label in CLASSES for t in class_texts("vi", label))
    assert re.findall(r"u hắc tố(?! ác tính)", vi, re.I) == []  # "u hắc tố" alone reads benign
    assert "trầm cảm" not in vi  # low mood, not depression
    assert gettext("vi", "Milia").startswith("Hạt kê") and "Mụn thịt" not in vi
    ko = " ".join(t for label in CLASSES for t in class_texts("ko", label))
    assert "딸기코" not in ko and "딸기코" not in gettext("ko", "Rosacea")
    assert "화끈거림" not in " ".join(catalog("ko").entries["Acne"].differential)  # flushing
    assert "긴급" in catalog("ko").text["summary_urgent"] and "신속한" not in ko
    for language, word in (("ko", "검수"), ("vi", "kiểm duyệt")):  # curated, not approved
        assert word not in catalog(language).text["banner"]
        assert word not in gettext(language, "Generated without a language model")


#: One term per concept: each status's label and the page's verdict for it use the same words.
TERMS = {
    "ko": {"inconclusive": "판정 보류", "rejected": "평가 불가", "urgent": "긴급"},
    "vi": {
        "inconclusive": "chưa kết luận được",
        "rejected": "không đánh giá được",
        "urgent": "khẩn",
    },
}


@pytest.mark.parametrize("language", sorted(TERMS))
def test_status_terms_are_one_term_per_concept(language: str) -> None:
    terms = TERMS[language]

    def says(msgid: str, term: str) -> bool:
        return term in gettext(language, msgid).casefold()

    assert says("Inconclusive", terms["inconclusive"])
    assert says("Inconclusive result: interpret with caution and refer when in doubt.",
                terms["inconclusive"])  # fmt: skip
    assert says("The result is inconclusive: arrange an in-person dermatology assessment.",
                terms["inconclusive"])  # fmt: skip
    assert says("Rejected", terms["rejected"])
    assert says("The image was rejected and not classified. Please take a new photo.",
                terms["rejected"])  # fmt: skip
    assert says("Urgent referral", terms["urgent"])
    assert says("Urgent in-person dermatology assessment recommended.", terms["urgent"])
    text = catalog(language).text
    assert text["referral_urgent"] == gettext(language, "Urgent referral")
    for key in ("summary_urgent", "summary_urgent_probability", "referral_urgent"):
        assert terms["urgent"] in text[key].casefold(), key
