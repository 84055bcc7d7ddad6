"""The LLM output guard on crafted texts in ko/en/vi: each rule, positive and negative."""

from __future__ import annotations

import itertools

import pytest

from service.pipeline.domain import CLASSES, GateOutcome, Referral
from service.pipeline.narrators import guard
from service.pipeline.narrators.content import catalog
from service.pipeline.narrators.knowledge import compose_narrative
from service.pipeline.narrators.sections import render_sections, split_sections
from service.pipeline.policy import PHOTO_NOT_ASSESSABLE
from tests.support.factories import classification, narration_request

ROUTINE = Referral("routine", ())
URGENT = Referral("urgent", ("carcinoma_finding",))
REJECTED = Referral("routine", (PHOTO_NOT_ASSESSABLE,))

GOOD = {
    "en": """## Observations

The image is consistent with acne (90%). This is a screening aid, not a diagnosis.

## Differential diagnosis

- Rosacea
- Folliculitis

## Red flags

- Rapid growth or bleeding

## Recommended next steps

- Arrange a prompt in-person assessment by a dermatologist.
- Wash gently twice a day and avoid picking spots.

## Follow-up

Review in 6-8 weeks; seek care sooner if a red flag appears.
""",
    "ko": """## 관찰 소견

사진은 여드름(90%)과 부합할 수 있습니다. 이는 진단이 아닌 선별 보조 도구입니다.

## 감별 진단

- 주사
- 모낭염

## 경고 징후

- 빠른 성장 또는 출혈

## 권장 조치

- 피부과 전문의의 대면 진료를 신속히 받으십시오.
- 하루 두 번 순하게 세안하고 병변을 짜지 마십시오.

## 추적 관찰

6-8주 후 재평가하십시오.
""",
    "vi": """## Nhận xét

Hình ảnh có thể phù hợp với mụn trứng cá (90%). Đây là công cụ sàng lọc, không phải chẩn đoán.

## Chẩn đoán phân biệt

- Trứng cá đỏ
- Viêm nang lông

## Dấu hiệu cảnh báo

- Lớn nhanh hoặc chảy máu

## Các bước tiếp theo được khuyến nghị

- Sắp xếp khám trực tiếp với bác sĩ da liễu sớm.
- Rửa mặt nhẹ nhàng hai lần mỗi ngày, không nặn mụn.

## Theo dõi

Tái khám sau 6-8 tuần.
""",
}
LANGS = tuple(GOOD)


def _with(language: str, sentence: str, section: str = "recommendations") -> str:
    """GOOD[language] with `sentence` as an extra bullet of `section`."""
    sections = split_sections(GOOD[language], language)
    sections[section] = f"{sections[section]}\n- {sentence}"
    return render_sections(sections, language)


@pytest.mark.parametrize("language", LANGS)
def test_a_careful_text_is_accepted_as_it_is(language: str) -> None:
    for referral in (ROUTINE, URGENT):
        verdict = guard.check(GOOD[language], language, referral)
        assert verdict.action == "accept" and verdict.text == GOOD[language]


@pytest.mark.parametrize(
    ("language", "sentence", "drug"),
    [
        ("en", "Doxycycline may be considered by a clinician.", "doxycycline"),
        ("en", "Hydrocortisone cream is sometimes used.", "hydrocortisone"),
        ("en", "A clinician may discuss isotretinoin.", "isotretinoin"),
        ("en", "Treatment may include 5-FU.", "fluorouracil"),
        ("ko", "독시사이클린을 고려할 수 있습니다.", "doxycycline"),
        ("ko", "클로베타솔 연고가 쓰이기도 합니다.", "clobetasol"),
        ("ko", "이미퀴모드 치료가 가능합니다.", "imiquimod"),
        ("vi", "Bác sĩ có thể cân nhắc doxycyclin.", "doxycycline"),
        ("vi", "Có thể dùng tretinoin bôi.", "tretinoin"),
        ("vi", "Metronidazol đôi khi được dùng.", "metronidazole"),
    ],
)
def test_a_drug_name_rejects_the_text(language: str, sentence: str, drug: str) -> None:
    verdict = guard.check(_with(language, sentence), language, ROUTINE)
    assert verdict.action == "reject" and guard.Finding("drug", drug) in verdict.findings


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "A topical corticosteroid or retinoid may be chosen by a clinician."),
        ("en", "Antibiotics and emollients are options a doctor may discuss."),
        ("ko", "국소 코르티코스테로이드나 레티노이드를 임상의가 고려할 수 있습니다."),
        ("vi", "Bác sĩ có thể chọn corticosteroid bôi hoặc retinoid."),
    ],
)
def test_drug_classes_are_not_drug_names(language: str, sentence: str) -> None:
    assert guard.check(_with(language, sentence), language, ROUTINE).action == "accept"


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "Take 100 mg each morning."),
        ("en", "Apply the cream twice a day."),
        ("en", "A 0.05% preparation is typical."),
        ("en", "Use a 2.5% gel at night."),
        ("en", "Take the tablets every 12 hours."),
        ("ko", "연고를 하루 2회 바르십시오."),
        ("ko", "500밀리그램을 복용합니다."),
        ("ko", "약물을 1일 3회 복용하십시오."),
        ("vi", "Bôi thuốc 2 lần/ngày."),
        ("vi", "Uống 2 viên sau ăn."),
        ("vi", "Dùng thuốc ngày hai lần."),
    ],
)
def test_a_dose_rejects_the_text(language: str, sentence: str) -> None:
    verdict = guard.check(_with(language, sentence), language, ROUTINE)
    assert verdict.action == "reject" and "dose" in verdict.rules


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "The model gave rosacea 8% and eczema <1%."),
        ("en", "Wash gently twice a day with a mild cleanser."),
        ("en", "Review in 2 weeks."),
        ("ko", "하루 두 번 순하게 세안하십시오."),
        ("ko", "약 2주 후에 다시 보십시오."),
        ("vi", "Rửa mặt nhẹ nhàng hai lần mỗi ngày."),
        ("vi", "Tái khám sau 2 tuần."),
    ],
)
def test_probabilities_and_skin_care_are_not_doses(language: str, sentence: str) -> None:
    assert guard.check(_with(language, sentence), language, ROUTINE).action == "accept"


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "This spot is harmless."),
        ("en", "There is nothing to worry about."),
        ("en", "There is no need to see a doctor."),
        ("en", "It is definitely benign."),
        ("ko", "걱정할 필요 없습니다."),
        ("ko", "이 병변은 무해합니다."),
        ("ko", "병원에 갈 필요 없습니다."),
        ("vi", "Tổn thương này vô hại."),
        ("vi", "Không cần đi khám."),
        ("vi", "Chắc chắn lành tính."),
    ],
)
def test_a_reassurance_is_cut_and_the_disclaimer_added(language: str, sentence: str) -> None:
    sections = split_sections(GOOD[language], language)
    kept = sections["observations"]
    sections["observations"] = f"{kept} {sentence}"  # same line as careful sentences
    text = render_sections(sections, language)
    verdict = guard.check(text, language, ROUTINE)
    assert verdict.action == "repair" and verdict.rules == ("reassurance",)
    assert sentence not in verdict.text
    repaired = split_sections(verdict.text, language)
    assert repaired["observations"] == kept  # the careful sentences of that line stay
    assert repaired["preamble"] == guard.disclaimer(language)
    assert {k: v for k, v in repaired.items() if k not in ("preamble", "observations")} == {
        k: v for k, v in sections.items() if k != "observations"
    }


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en", "Benign lesions such as moles are in the differential."),
        ("en", "Worry about a spot that bleeds."),
        ("ko", "점과 같은 양성 병변도 고려합니다."),
        ("vi", "Tổn thương lành tính như nốt ruồi cũng cần nghĩ đến."),
    ],
)
def test_cautious_mentions_of_benign_lesions_stay(language: str, sentence: str) -> None:
    assert guard.check(_with(language, sentence, "differential"), language, ROUTINE).rules == ()


@pytest.mark.parametrize("language", LANGS)
def test_a_missing_section_rejects_the_text(language: str) -> None:
    sections = split_sections(GOOD[language], language)
    del sections["follow_up"]
    verdict = guard.check(render_sections(sections, language), language, ROUTINE)
    assert verdict.action == "reject"
    assert verdict.findings == (guard.Finding("missing_section", "follow_up"),)


@pytest.mark.parametrize("language", LANGS)
def test_a_rejected_photo_needs_observations_and_recommendations_only(language: str) -> None:
    sections = split_sections(GOOD[language], language)
    two = {k: sections[k] for k in ("observations", "recommendations")}
    assert guard.check(render_sections(two, language), language, REJECTED).action == "accept"
    del two["recommendations"]
    verdict = guard.check(render_sections(two, language), language, REJECTED)
    assert verdict.findings == (guard.Finding("missing_section", "recommendations"),)


@pytest.mark.parametrize("language", LANGS)
def test_a_missing_urgent_line_is_inserted(language: str) -> None:
    sections = split_sections(GOOD[language], language)
    sections["recommendations"] = sections["recommendations"].splitlines()[1]  # no urgency
    text = render_sections(sections, language)
    assert guard.check(text, language, ROUTINE).action == "accept"  # routine: nothing missing
    verdict = guard.check(text, language, URGENT)
    assert verdict.action == "repair" and verdict.rules == ("missing_urgent",)
    first = split_sections(verdict.text, language)["recommendations"].splitlines()[0]
    assert first == f"- {catalog(language).text['summary_urgent']}"


def test_the_urgent_line_names_the_runner_up_when_the_template_can() -> None:
    referral = Referral("urgent", ("carcinoma_probability",), "Carcinoma", 0.22)
    for language in LANGS:
        text = catalog(language).text
        line = guard.urgent_line(language, referral)
        name = catalog(language).entries["Carcinoma"].short_name
        assert line == text["summary_urgent_probability"].format(name=name, confidence="22%")
        assert guard.urgent_line(language, URGENT) == text["summary_urgent"]


def test_a_repair_that_empties_a_section_is_a_rejection() -> None:
    sections = split_sections(GOOD["en"], "en")
    sections["follow_up"] = "Nothing to worry about."
    verdict = guard.check(render_sections(sections, "en"), "en", ROUTINE)
    assert verdict.action == "reject" and "missing_section" in verdict.rules


def test_the_reason_names_rules_and_terms_only() -> None:
    text = _with("en", "Take doxycycline 100 mg. It is harmless.")
    verdict = guard.check(text, "en", ROUTINE)
    assert verdict.reason() == "drug: doxycycline; dose: 100 mg; reassurance: harmless"


@pytest.mark.parametrize(
    ("language", "label", "status"),
    list(itertools.product(LANGS, CLASSES, ("ok", "inconclusive", "rejected"))),
)
def test_the_knowledge_fallback_never_breaks_a_rejecting_rule(
    language: str, label: str, status: str
) -> None:
    """What the run falls back to passes the rules that would reject it."""
    reasons = {"ok": (), "inconclusive": ("low_confidence",), "rejected": ("not_skin",)}[status]
    request = narration_request(
        result=classification(label, 0.6),
        language=language,
        verdict=GateOutcome(status, reasons),  # type: ignore[arg-type]
    )
    findings = guard.find(compose_narrative(request), language, request.referral)
    assert not {f.rule for f in findings} & guard.REJECTING
