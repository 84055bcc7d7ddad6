"""The narrative section contract: headings, splitting LLM-style text, round trips."""

from __future__ import annotations

import pytest

from service.pipeline.domain import LANGUAGES, REPORT_SECTIONS
from service.pipeline.narrators.sections import (
    SECTION_TITLES,
    heading,
    render_sections,
    section_key,
    split_sections,
)

BODIES = {key: f"Body of {key}.\n- point one\n- point two" for key in REPORT_SECTIONS}


def test_every_language_titles_every_section_distinctly() -> None:
    assert set(SECTION_TITLES) == set(LANGUAGES)
    for titles in SECTION_TITLES.values():
        assert tuple(titles) == REPORT_SECTIONS
        assert len({section_key(t) for t in titles.values()}) == len(REPORT_SECTIONS)


def test_heading_is_markdown_level_two() -> None:
    assert heading("red_flags", "en") == "## Red flags"
    assert heading("observations", "ko") == "## 관찰 소견"
    assert heading("differential", "vi-VN") == "## Chẩn đoán phân biệt"
    with pytest.raises(ValueError):
        heading("observations", "fr")


@pytest.mark.parametrize("language", LANGUAGES)
def test_render_then_split_round_trips(language: str) -> None:
    text = render_sections(BODIES, language, preamble="Intro line.")
    assert split_sections(text, language) == {"preamble": "Intro line.", **BODIES}


def test_llm_style_headings_are_recognised() -> None:
    text = (
        "Here is the report.\n\n"
        "# 1. Observations:\nobs\n\n"
        "**Differential Diagnoses**\ndiff\n\n"
        "### red-flags ###\nflags\n\n"
        "**Recommendations:** see a dermatologist\nmore\n\n"
        "  ##   Follow up  \nlater\n"
    )
    assert split_sections(text, "en") == {
        "preamble": "Here is the report.",
        "observations": "obs",
        "differential": "diff",
        "red_flags": "flags",
        "recommendations": "see a dermatologist\nmore",
        "follow_up": "later",
    }


def test_english_headings_in_korean_and_vietnamese_text() -> None:
    ko = "## 관찰 소견\n가려움\n## Red flags\n출혈\n## 2) 권장 조치：\n진료"
    assert split_sections(ko, "ko") == {
        "observations": "가려움",
        "red_flags": "출혈",
        "recommendations": "진료",
    }
    vi = "**Nhận xét:**\nda đỏ\n\n## Follow-up\ntái khám"
    assert split_sections(vi, "vi") == {"observations": "da đỏ", "follow_up": "tái khám"}


def test_bare_title_line_is_a_heading_but_bare_alias_or_bullet_is_not() -> None:
    text = "Red flags:\nbleeding\nPlan\n- Follow-up\nFollow-up\nin 4 weeks"
    assert split_sections(text, "en") == {
        "red_flags": "bleeding\nPlan\n- Follow-up",
        "follow_up": "in 4 weeks",
    }


def test_unknown_headings_and_repeats_keep_all_text() -> None:
    text = (
        "## Patient context\ncontext\n"
        "## Observations\nobs\n### Morphology\nscaly\n"
        "## Observations\nmore obs\n"
        "**Note**\nkept"
    )
    result = split_sections(text, "en")
    assert result["preamble"] == "## Patient context\ncontext"
    assert result["observations"] == "obs\n### Morphology\nscaly\n\nmore obs\n**Note**\nkept"


def test_empty_and_heading_only_text() -> None:
    assert split_sections("", "en") == {}
    assert split_sections("## Red flags\n\n", "en") == {}
    assert render_sections({}, "en") == ""
