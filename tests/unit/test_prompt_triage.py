"""The prompt carries the one triage decision and a malignant runner-up; a rejected photo
sends no probabilities; medicine names are banned, not only doses."""

from __future__ import annotations

import pytest

from service.pipeline.domain import GateOutcome
from service.pipeline.narrators.base import NarrationRequest
from service.pipeline.narrators.knowledge import knowledge_entry
from service.pipeline.narrators.prompts import system_prompt, user_prompt
from tests.support.factories import classification, narration_request

LANGS = ("en", "ko", "vi")


def _request(label: str, p: float, language: str = "en", **others: float) -> NarrationRequest:
    return narration_request(result=classification(label, p, **others), language=language)


@pytest.mark.parametrize("language", LANGS)
def test_an_urgent_referral_is_in_the_prompt(language: str) -> None:
    request = _request("Carcinoma", 0.8, language)
    assert request.referral.level == "urgent"
    text = user_prompt(request)
    marker = {"en": "URGENT", "ko": "긴급", "vi": "KHẨN"}[language]
    assert marker in text
    assert marker not in user_prompt(_request("Acne", 0.9, language))


@pytest.mark.parametrize("language", LANGS)
def test_a_malignant_runner_up_is_named_with_its_probability(language: str) -> None:
    request = _request("Acne", 0.6, language, Carcinoma=0.3)
    assert request.referral.runner_up == "Carcinoma"
    text = user_prompt(request)
    name = knowledge_entry("Carcinoma", language).name
    line = next(line for line in text.splitlines() if name in line and "30%" in line)
    assert line not in user_prompt(_request("Acne", 0.9, language))


@pytest.mark.parametrize("language", LANGS)
def test_a_rejected_photo_sends_no_probabilities(language: str) -> None:
    rejected = narration_request(
        result=classification("Carcinoma", 0.7),
        language=language,
        verdict=GateOutcome("rejected", ("not_skin",)),
    )
    text = user_prompt(rejected)
    assert "%" not in text and "70" not in text
    assert not any(key in text for key in ("URGENT", "긴급", "KHẨN", "Triage", "분류 결정"))
    assert knowledge_entry("Carcinoma", language).name not in text


@pytest.mark.parametrize(
    ("language", "ban"),
    [
        ("en", "Never name any medicine"),
        ("ko", "어떤 약의 이름도"),
        ("vi", "Không nêu tên bất kỳ thuốc"),
    ],
)
def test_the_system_prompt_bans_medicine_names_and_reassurance(language: str, ban: str) -> None:
    prompt = system_prompt(language)
    assert ban in prompt
    assert {"en": "harmless", "ko": "무해", "vi": "vô hại"}[language] in prompt
