"""The knowledge narrator, its curated content and the analysis summary."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
from importlib import resources

import pytest

from service.pipeline.domain import (
    CLASSES,
    LANGUAGES,
    Classification,
    GateOutcome,
    ModelInfo,
    Patient,
    Status,
)
from service.pipeline.narrators.base import NarrationRequest, Narrator
from service.pipeline.narrators.content import age_band, catalog
from service.pipeline.narrators.knowledge import (
    CONTENT_VERSION,
    KnowledgeNarrator,
    compose_narrative,
    knowledge_entry,
    percent,
)
from service.pipeline.narrators.sections import SECTION_TITLES, split_sections
from service.pipeline.narrators.summary import summarize
from service.pipeline.policy import referral
from tests.support.factories import TEST_THRESHOLD

HANGUL = re.compile(r"[\uac00-\ud7a3]")
VIETNAMESE = re.compile(
    r"[àáãạảăằắẳẵặâầấẩẫậèéẹẻẽêềếểễệìíĩỉịòóõọỏôồốổỗộơờớởỡợùúũụủưừứửữựỳýỵỷỹđ]", re.I
)
#: Letters only Vietnamese uses among the three languages' neighbours (horn, breve, dot below).
VIETNAMESE_ONLY = re.compile(r"[ăđơưạặậẹệịọộợụựỵ]", re.I)
MODEL = ModelInfo(name="test-classifier", version="1", sha256="0" * 64)
#: "Refer for prompt in-person dermatology assessment", as written in each language's content.
REFERRAL = {
    "en": "prompt in-person assessment by a dermatologist",
    "ko": "피부과 전문의의 대면 진료를 신속히",
    "vi": "khám trực tiếp với bác sĩ da liễu sớm",
}
TEXT_FIELDS = ("name", "short_name", "summary", "description", "follow_up")
LIST_FIELDS = ("features", "differential", "red_flags", "recommendations")


def classification(
    top: str, p: float = 0.8, second: str | None = None, q: float = 0.0
) -> Classification:
    rest = (1.0 - p - q) / (len(CLASSES) - (2 if second else 1))
    probs = {label: rest for label in CLASSES}
    probs[top] = p
    if second:
        probs[second] = q
    return Classification(probabilities=probs, model=MODEL)


def request(
    c: Classification,
    language: str = "en",
    status: Status = "ok",
    reasons: tuple[str, ...] = (),
    patient: Patient | None = None,
    history: str | None = None,
) -> NarrationRequest:
    return NarrationRequest(
        case_id="case-1",
        language=language,
        patient=patient or Patient(),
        history=history,
        classification=c,
        gate=(verdict := GateOutcome(status=status, reasons=reasons)),
        referral=referral(c, verdict, TEST_THRESHOLD),
    )


def collect(narrator: KnowledgeNarrator, req: NarrationRequest) -> list[str]:
    async def run() -> list[str]:
        return [chunk async for chunk in narrator.stream(req)]

    return asyncio.run(run())


def localized_names(language: str) -> list[str]:
    return [knowledge_entry(label, language).short_name for label in CLASSES]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("label", CLASSES)
def test_every_entry_is_complete_and_in_its_language(label: str, language: str) -> None:
    entry = knowledge_entry(label, language)
    assert (entry.label, entry.language) == (label, language)
    texts = [getattr(entry, f) for f in TEXT_FIELDS]
    texts += [item for f in LIST_FIELDS for item in getattr(entry, f)]
    texts += [*entry.age_notes.values(), *entry.sex_notes.values()]
    assert all(t.strip() for t in texts)
    assert all(len(getattr(entry, f)) >= 3 for f in LIST_FIELDS)
    script = {"ko": HANGUL, "vi": VIETNAMESE}.get(language)
    if script:
        assert all(script.search(t) for t in texts), "untranslated text"
    if language == "vi":
        assert len(VIETNAMESE_ONLY.findall(" ".join(texts))) > 50
    assert set(entry.age_notes) <= {"infant", "child", "adolescent", "adult", "older"}
    assert set(entry.sex_notes) <= {"female", "male"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_languages_share_structure(language: str) -> None:
    for label in CLASSES:
        en, other = knowledge_entry(label, "en"), knowledge_entry(label, language)
        assert set(en.age_notes) == set(other.age_notes)
        assert set(en.sex_notes) == set(other.sex_notes)
        for f in LIST_FIELDS:
            assert len(getattr(en, f)) == len(getattr(other, f)), (label, f)


def test_merged_labels_are_explained() -> None:
    carcinoma = knowledge_entry("Carcinoma", "en").description
    assert "basal cell" in carcinoma and "squamous cell" in carcinoma
    keratosis = knowledge_entry("Keratosis", "en").description
    assert "Seborrhoeic" in keratosis and "Actinic" in keratosis
    assert "premalignant" in keratosis and "melanoma" in keratosis
    assert "전암성" in knowledge_entry("Keratosis", "ko").description
    assert "tiền ung thư" in knowledge_entry("Keratosis", "vi").description


def test_unknown_label_or_language() -> None:
    with pytest.raises(ValueError):
        knowledge_entry("Psoriasis", "en")
    with pytest.raises(ValueError):
        knowledge_entry("Acne", "fr")


def test_narrator_identity() -> None:
    narrator = KnowledgeNarrator()
    assert narrator.without_llm is True
    assert narrator.info.name == "skinscreen-knowledge-base"
    assert narrator.info.kind == "narrator"
    assert narrator.info.version == CONTENT_VERSION
    files = resources.files("service.pipeline.narrators.content")
    blob = b"".join((files / f"{lang}.json").read_bytes() for lang in LANGUAGES)
    assert narrator.info.sha256 == hashlib.sha256(blob).hexdigest()
    narrator.ensure_capacity()
    typed: Narrator = narrator
    assert typed.info is narrator.info


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("status", ["ok", "inconclusive", "rejected"])
def test_stream_chunks_concatenate_to_the_narrative(language: str, status: Status) -> None:
    req = request(classification("Eczema"), language, status, ("blurred",))
    chunks = collect(KnowledgeNarrator(), req)
    assert len(chunks) >= 3
    assert "".join(chunks) == compose_narrative(req)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("label", CLASSES)
def test_narrative_splits_into_all_sections(label: str, language: str) -> None:
    text = compose_narrative(request(classification(label), language, history="itchy"))
    sections = split_sections(text, language)
    assert list(sections) == ["preamble", *SECTION_TITLES[language]]
    assert CONTENT_VERSION in sections["preamble"]
    entry = knowledge_entry(label, language)
    assert entry.description in sections["observations"]
    assert entry.red_flags[0] in sections["red_flags"]
    assert "itchy" not in text
    assert "80%" in sections["observations"]


def test_banner_labels_text_as_written_without_a_language_model() -> None:
    c = classification("Acne")
    assert compose_narrative(request(c, "en")).startswith(
        "Generated without a language model from a curated knowledge base"
    )
    assert "언어 모델 없이" in compose_narrative(request(c, "ko")).splitlines()[0]
    assert "không dùng mô hình ngôn ngữ" in compose_narrative(request(c, "vi")).splitlines()[0]


@pytest.mark.parametrize("language", LANGUAGES)
def test_carcinoma_and_inconclusive_recommend_prompt_dermatology(language: str) -> None:
    for req in (
        request(classification("Carcinoma", 0.9), language),
        request(classification("Milia", 0.4, "Acne", 0.35), language, "inconclusive"),
        request(classification("Keratosis", 0.6, "Carcinoma", 0.3), language),
    ):
        sections = split_sections(compose_narrative(req), language)
        assert REFERRAL[language] in sections["recommendations"]
    benign = split_sections(compose_narrative(request(classification("Milia"), language)), language)
    assert REFERRAL[language] not in benign["recommendations"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_inconclusive_lists_candidates_without_asserting_one(language: str) -> None:
    c = classification("Rosacea", 0.42, "Acne", 0.38)
    text = compose_narrative(request(c, language, "inconclusive", ("low_confidence",)))
    observations = split_sections(text, language)["observations"]
    assert "42%" in observations and "38%" in observations
    finding = compose_narrative(request(c, language)).split("\n\n")[2]
    assert finding[:20] not in observations  # the "most likely finding is …" sentence


@pytest.mark.parametrize("language", LANGUAGES)
def test_rejected_gives_no_diagnosis_and_retake_advice(language: str) -> None:
    req = request(classification("Carcinoma"), language, "rejected", ("too_dark", "mystery"))
    text = compose_narrative(req)
    assert not any(name in text.casefold() for name in localized_names(language))
    assert "%" not in text
    sections = split_sections(text, language)
    assert set(sections) == {"preamble", "observations", "recommendations"}
    assert {"en": "too dark", "ko": "어두움", "vi": "quá tối"}[language] in text


def test_runner_up_is_mentioned_only_when_close() -> None:
    close = compose_narrative(request(classification("Eczema", 0.6, "Rosacea", 0.3)))
    far = compose_narrative(request(classification("Eczema", 0.9, "Rosacea", 0.06)))
    assert "rosacea (30%)" in close
    assert "rosacea (6%)" not in far and "gave some weight" not in far


def test_history_is_acknowledged_never_echoed() -> None:
    c = classification("Eczema")
    with_history = compose_narrative(request(c, history="Patient works as a baker since 2019"))
    assert "clinical history was provided" in with_history
    assert "baker" not in with_history and "2019" not in with_history
    assert "No clinical history was provided." in compose_narrative(request(c))


def test_age_and_sex_change_the_narrative_where_relevant() -> None:
    def text(label: str, age: int | None = None, sex: str | None = None) -> str:
        patient = Patient(age=age, sex=sex)  # type: ignore[arg-type]
        return compose_narrative(request(classification(label), patient=patient))

    assert "newborns" in text("Milia", age=0) and "Age-related" not in text("Milia")
    assert text("Milia", age=0) != text("Milia", age=40)
    assert "cumulative sun damage" in text("Keratosis", age=75)
    assert "polycystic ovary" in text("Acne", age=25, sex="female")
    assert "polycystic ovary" not in text("Acne", age=25, sex="male")
    assert "rhinophyma" in text("Rosacea", sex="male").split("Sex-related note:")[1]
    assert text("Eczema", age=40, sex="female") == text("Eczema", age=40, sex="male")


def test_age_bands() -> None:
    bands = [age_band(a) for a in (None, -1, 0, 1, 11, 12, 17, 18, 64, 65, 99)]
    assert bands == [None, None, "infant", "child", "child", "adolescent", "adolescent",
                     "adult", "adult", "older", "older"]  # fmt: skip


def test_percent_never_claims_certainty() -> None:
    assert [percent(p) for p in (0.0, 0.004, 0.5, 0.874, 0.999)] == [
        "<1%", "<1%", "50%", "87%", ">99%"
    ]  # fmt: skip


def summary_of(c: Classification, verdict: GateOutcome, language: str) -> str:
    return summarize(c, verdict, referral(c, verdict, TEST_THRESHOLD), language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_summarize_covers_every_status(language: str) -> None:
    text = catalog(language).text
    urgent, soon, disclaimer = (
        text["summary_urgent"],
        text["summary_soon"],
        text["summary_disclaimer"],
    )
    ok = summary_of(classification("Milia", 0.81), GateOutcome("ok"), language)
    assert knowledge_entry("Milia", language).short_name in ok.casefold() and "81%" in ok
    assert urgent not in ok and text["summary_routine"] in ok
    cancer = summary_of(classification("Carcinoma"), GateOutcome("ok"), language)
    assert urgent in cancer
    low_risk = {"Acne": 0.4, "Rosacea": 0.35, "Eczema": 0.15, "Milia": 0.06, "Keratosis": 0.03}
    unsure = summary_of(
        Classification({**low_risk, "Carcinoma": 0.01}, MODEL),
        GateOutcome("inconclusive"),
        language,
    )
    assert "40%" in unsure and "35%" in unsure and soon in unsure and urgent not in unsure
    rejected = summary_of(
        classification("Carcinoma"),
        GateOutcome("rejected", ("blurred", "not_skin", "unheard_of", "also_unknown")),
        language,
    )
    assert not any(n in rejected.casefold() for n in localized_names(language))
    assert "%" not in rejected and urgent not in rejected
    assert text["rejected_see_clinician"] in rejected
    # the summary (also the FHIR conclusion) cannot repeat patient data: it is not given any
    assert list(inspect.signature(summarize).parameters) == [
        "classification",
        "gate",
        "referral",
        "language",
    ]
    for summary in (ok, cancer, unsure, rejected):
        assert summary.endswith(disclaimer), summary
        assert 3 <= len(re.findall(r"[.!?。](?:\s|$)", summary)) <= 5, summary


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_carcinoma_runner_up_under_the_threshold_rank_is_urgent_without_reassurance(
    language: str,
) -> None:
    """Milia 80 % / Carcinoma 12 %: urgent, the carcinoma named, no benign Milia summary."""
    c = Classification({**dict.fromkeys(CLASSES, 0.02), "Milia": 0.80, "Carcinoma": 0.12}, MODEL)
    summary = summary_of(c, GateOutcome("ok"), language)
    entry = knowledge_entry("Milia", language)
    assert entry.summary not in summary
    assert knowledge_entry("Carcinoma", language).short_name in summary and "12%" in summary
    assert summary.endswith(catalog(language).text["summary_disclaimer"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_summarize_maps_every_reason_code(language: str) -> None:
    from service.pipeline.quality import (
        AMBIGUOUS,
        LOW_CONFIDENCE,
        NOT_SKIN,
        QUALITY_REASONS,
        SEVERAL_CONDITIONS,
        UNUSUAL_IMAGE,
    )

    codes = (*QUALITY_REASONS, NOT_SKIN, LOW_CONFIDENCE, AMBIGUOUS, SEVERAL_CONDITIONS,
             UNUSUAL_IMAGE)  # fmt: skip
    assert set(codes) <= set(catalog(language).reasons)  # every gate reason has its phrase
    phrases = set()
    for code in codes:
        gate = GateOutcome("rejected", (code,))
        phrases.add(summary_of(classification("Acne"), gate, language))
    assert len(phrases) == len(codes)
    unknown = summary_of(classification("Acne"), GateOutcome("rejected"), language)
    assert unknown not in phrases


def test_the_gate_verdict_alone_decides() -> None:
    """Narrative and summary follow the one verdict (the gate), never re-deciding it."""
    c = classification("Acne", 0.45, "Rosacea", 0.4)
    unsure = GateOutcome("inconclusive", ("low_confidence",))
    assert "unsure" in compose_narrative(request(c, status="inconclusive", reasons=unsure.reasons))
    assert "within the next few weeks" in summary_of(c, unsure, "en")
    assert "unsure" not in compose_narrative(request(c))
    assert "within the next few weeks" not in summary_of(c, GateOutcome("ok"), "en")
