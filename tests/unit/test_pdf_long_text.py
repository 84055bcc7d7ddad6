"""Free text cannot make the PDF layout slow: clipped with a notice, breakable, time-boxed."""

from __future__ import annotations

import shutil
import subprocess
import time
import unicodedata
from dataclasses import replace

import pytest
from PIL import Image

from service.pipeline.domain import Patient
from service.report.pdf import PdfRenderer, RenderTimeout
from service.report.text import BREAK_EVERY, ZERO_WIDTH_SPACE, TextLimits, breakable, clip, shape
from tests.unit.test_pdf_report import make_report

ONE_MB = 1_000_000


def test_clip_counts_what_it_leaves_out_and_never_splits_a_grapheme() -> None:
    assert clip("short", 10).omitted == 0 and clip("short", 10).text == "short"
    clipped = clip("x" * 100, 40)
    assert clipped.omitted == 60 and clipped.text == "x" * 40 + "…"
    accented = "e" + "\u0301" * 10  # one grapheme: the cut moves before it
    assert clip("ab" + accented, 5).text == "ab…"


@pytest.mark.parametrize(
    "text",
    [
        "x" * 500,
        "กินข้าวแล้วหรือยัง" * 20,  # Thai: no spaces, vowel and tone marks
        "क्षत्रिय" * 40,  # Devanagari conjuncts (virama)
        "a" + "\u0301" * 300,  # one grapheme with 300 marks: no break is possible
        "👩\u200d👩\u200d👧" * 30,  # joiner sequences
    ],
)
def test_breakable_adds_breaks_only_between_graphemes(text: str) -> None:
    broken = breakable(text)
    assert broken.replace(ZERO_WIDTH_SPACE, "") == text
    for index, char in enumerate(broken):
        if char == ZERO_WIDTH_SPACE:
            after, before = broken[index + 1], broken[index - 1]
            assert not unicodedata.category(after).startswith("M")
            assert not unicodedata.category(before).startswith("M")
            assert "\u200d" not in (after, before)
    runs = broken.split(ZERO_WIDTH_SPACE)
    if text.startswith("x"):
        assert max(map(len, runs)) == BREAK_EVERY


def test_short_words_are_left_alone() -> None:
    text = "itching for 3 weeks, worse at night; 김민준 Nguyễn Thị Hoa"
    assert shape(text, 1000).text == text


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.linear_gradient("L").resize((400, 300)).convert("RGB")


def _pdf_text(pdf: bytes) -> str:
    result = subprocess.run(
        ["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True, timeout=30
    )
    return result.stdout.decode("utf-8").replace(ZERO_WIDTH_SPACE, "")


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_a_megabyte_word_in_history_and_name_renders_clipped_with_a_notice(
    photo: Image.Image,
) -> None:
    report = make_report("en", patient=Patient(name="N" * ONE_MB), history="H" * ONE_MB, notices=())
    started = time.monotonic()
    pdf = PdfRenderer(text_limits=TextLimits(name=50, history=300)).render(report, photo)
    assert time.monotonic() - started < 60  # hang guard: unshaped, this layout takes hours
    text = " ".join(_pdf_text(pdf).split())
    assert "N" * 20 in text and "H" * 20 in text
    assert text.count("H") < 1000  # clipped before layout, not laid out and cut
    omitted = ONE_MB - 50 + ONE_MB - 300
    notice = f"Some text was too long for the report: {omitted} characters are not shown."
    assert notice in text


def test_the_notice_is_translated() -> None:
    html = PdfRenderer(text_limits=TextLimits(history=10)).render_html(
        make_report("ko", history="가" * 50), "data:image/jpeg;base64,", None
    )
    assert "내용이 너무 길어 보고서에 40자가 표시되지 않았습니다." in html


def test_a_layout_past_its_budget_is_refused(photo: Image.Image) -> None:
    renderer = PdfRenderer(budget_s=0.001)
    with pytest.raises(RenderTimeout) as caught:
        renderer.render(make_report("en"), photo)
    assert caught.value.status == 503 and caught.value.code == "render-timeout"
    assert "0.001 s" in caught.value.detail


def test_errors_inside_the_layout_thread_reach_the_caller(photo: Image.Image) -> None:
    with pytest.raises(Exception, match="language"):
        PdfRenderer().render(replace(make_report("en"), language="fr"), photo)
