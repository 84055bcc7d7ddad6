"""The PDF report: real fonts, localized text, PDF/A-3b, attachments, a non-blank page."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from service.pipeline.domain import (
    Classification,
    GateOutcome,
    ModelInfo,
    Patient,
    Report,
    Review,
    SourceImage,
)
from service.pipeline.narrators.content import catalog
from service.pipeline.policy import referral
from service.report.pdf import Attachment, LocalOnlyFetcher, PdfRenderer, page_counter_css
from service.settings import REPO_ROOT

ARTIFACTS = REPO_ROOT / "build" / "test-artifacts"
POPPLER = ("pdffonts", "pdftotext", "pdfinfo", "pdftoppm", "pdfdetach")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in POPPLER), reason="poppler-utils not installed"
)

NAMES = {"ko": "김민준", "en": "Jane Doe", "vi": "Nguyễn Thị Hoa"}
EXPECTED = {  # labels, class names, no-LLM label, date, disclaimer, page counter
    "ko": "피부 선별 검사 보고서|환자|여드름|습진|비립종|언어 모델 없이 생성됨|2025. 3. 4.|"
    "진단이 아니며|1 / 1 페이지",
    "en": "Skin screening report|Patient|Acne|Eczema|Milia|Generated without a language model|"
    "Mar 4, 2025|not a diagnosis|Page 1 of 1",
    "vi": "Báo cáo sàng lọc da|Bệnh nhân|Mụn trứng cá|Chàm|Được tạo mà không dùng mô hình ngôn ngữ|"
    "4 thg 3, 2025|không phải là chẩn đoán|Trang 1 / 1",
}
URGENT = {language: catalog(language).text["summary_urgent"] for language in ("ko", "en", "vi")}
SECTIONS = {
    "observations": "Papules and **comedones** on the cheek.\n\n- closed comedones\n- few pustules",
    "recommendations": "1. Gentle cleanser\n2. Topical retinoid <script>alert(1)</script>",
}


def make_report(language: str, top: str = "Acne", status: str = "ok", **changes: object) -> Report:
    probabilities = dict.fromkeys(
        ("Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea"), 0.04
    )
    probabilities[top] = 0.8
    report = Report(
        case_id="case-7f3a9c",
        language=language,
        patient=Patient(name=NAMES[language], age=34, sex="female"),
        history="itching for 3 weeks",
        source=SourceImage(
            media_type="image/jpeg",
            sha256="ab" * 32,
            width=1024,
            height=768,
            dicom={"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1", "SOPInstanceUID": "1.2.3.4"},
        ),
        classification=Classification(
            probabilities=probabilities,
            model=ModelInfo("skinscreen-yolov8n-cls", "1.0.0", "c0ffee" * 10),
        ),
        gate=GateOutcome(status=status, reasons=("low_confidence",) if status != "ok" else ()),  # type: ignore[arg-type]
        summary="Findings are most consistent with the top class.",
        sections=SECTIONS,
        narrative="",
        narrator=ModelInfo("knowledge", "2025.1", "d00d" * 16, kind="narrator"),
        generated_without_llm=True,
        referral=referral(
            Classification(probabilities, ModelInfo("m", "1", "0" * 64)),
            GateOutcome(status=status, reasons=("low_confidence",) if status != "ok" else ()),  # type: ignore[arg-type]
            0.05,
        ),
        created_at="2025-03-04T14:05:00+00:00",
        notices=("narrator_fallback",),
    )
    return replace(report, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def renderer() -> PdfRenderer:
    return PdfRenderer()


@pytest.fixture(scope="module")
def photo(skin_jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(skin_jpeg)).convert("RGB")


def _tool(*args: str | Path) -> str:
    return subprocess.run(
        [str(a) for a in args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def _write(pdf: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(pdf)
    return path


@pytest.mark.parametrize("language", ["ko", "en", "vi"])
def test_report_pdf(renderer: PdfRenderer, photo: Image.Image, language: str) -> None:
    heatmap = io.BytesIO()
    photo.convert("L").resize((300, 200)).save(heatmap, format="PNG")
    fhir = json.dumps({"resourceType": "DiagnosticReport", "id": "dr-1"}).encode()
    pdf = renderer.render(
        make_report(language),
        photo,
        heatmap.getvalue(),
        [Attachment("diagnostic-report.json", fhir, "application/fhir+json", "FHIR R4")],
    )
    path = _write(pdf, f"report-{language}.pdf")

    fonts = _tool("pdffonts", path)
    assert "DejaVu-Sans" in fonts
    if language == "ko":
        assert "Noto-Sans-CJK-KR" in fonts
    font_rows = [line for line in fonts.splitlines()[2:] if line.strip()]
    assert font_rows and all(re.search(r"\byes\s+yes\b", row) for row in font_rows)  # emb sub

    text = " ".join(_tool("pdftotext", "-layout", path, "-").split())
    for expected in [NAMES[language], *EXPECTED[language].split("|")]:
        assert expected in text
    assert "\ufffd" not in text and "<script>" in text  # narrator text escaped, not dropped
    assert URGENT[language] not in text
    assert "1.2.826.0.1.3680043.8.498.1" in text and "c0ffeec0ffee" in text  # UID, model

    pages = re.search(r"^Pages:\s+(\d+)$", _tool("pdfinfo", path), re.MULTILINE)
    assert pages and int(pages.group(1)) >= 1
    xmp = _tool("pdfinfo", "-meta", path)
    assert 'pdfaid:part="3"' in xmp and 'pdfaid:conformance="B"' in xmp
    detached = _tool("pdfdetach", "-list", path)
    assert "diagnostic-report.json" in detached
    saved = ARTIFACTS / f"attachment-{language}.json"
    _tool("pdfdetach", "-save", "1", "-o", saved, path)
    assert saved.read_bytes() == fhir

    png = ARTIFACTS / f"report-{language}"
    _tool("pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", "-singlefile", path, png)
    with Image.open(png.with_suffix(".png")) as page:
        stat = ImageStat.Stat(page.convert("L"))
        assert page.width > 300 and stat.stddev[0] > 20  # ink on the page, not a blank sheet


@pytest.mark.parametrize("language", sorted(URGENT))
@pytest.mark.parametrize(
    ("top", "status", "level"),
    [("Carcinoma", "ok", "urgent"), ("Acne", "inconclusive", "soon"), ("Eczema", "ok", "routine")],
)
def test_referral_box(
    renderer: PdfRenderer, photo: Image.Image, language: str, top: str, status: str, level: str
) -> None:
    report = make_report(language, top=top, status=status)
    assert report.referral.level == level
    html = renderer.render_html(report, "data:image/jpeg;base64,", None)
    assert ('id="urgent-referral"' in html) is (level == "urgent")
    assert ('id="soon-referral"' in html) is (level == "soon")
    assert (URGENT[language] in html) is (level == "urgent")
    # an unreviewed report says so
    assert catalog(language).text["review_pending"] in html


def test_a_reviewed_report_shows_who_signed_it(renderer: PdfRenderer) -> None:
    review = Review(
        reviewer="Dr. Jane Roe",
        reviewer_id="NPI-123",
        decision="revise",
        finding="Eczema",
        reviewed_at="2025-03-05T09:30:00+00:00",
        version=2,
        comment="Scaly plaque; see you in 4 weeks.",
    )
    html = renderer.render_html(make_report("en", review=review), "data:,", None)
    assert "Reviewed by Dr. Jane Roe (NPI-123) on" in html
    assert "Finding revised by the reviewing clinician to: eczema" in html.replace(
        "Eczema", "eczema"
    )
    assert "Scaly plaque; see you in 4 weeks." in html
    assert catalog("en").text["review_pending"] not in html


def test_html_is_escaped_and_missing_values_dash(renderer: PdfRenderer) -> None:
    report = make_report(
        "ko", patient=Patient(name="<b>x</b>"), history=None, generated_without_llm=False
    )
    html = renderer.render_html(report, "data:image/jpeg;base64,", None)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "&lt;script&gt;" in html and "<strong>comedones</strong>" in html
    assert "<ul><li>closed comedones</li>" in html and "<ol><li>Gentle cleanser</li>" in html
    assert html.count("<td>—</td>") == 3  # age, sex, history
    assert "언어 모델 없이 생성됨" not in html


def test_fetcher_refuses_network_and_outside_files(tmp_path: Path) -> None:
    fetcher = LocalOnlyFetcher(tmp_path)
    for url in ("https://example.com/font.woff", "http://127.0.0.1/x.png", "file:///etc/passwd"):
        with pytest.raises(ValueError):
            fetcher.fetch(url)
    (tmp_path / "a.css").write_text("p {}")
    assert fetcher.fetch((tmp_path / "a.css").as_uri()).read() == b"p {}"
    assert fetcher.fetch("data:text/plain;base64,aGk=").read() == b"hi"


def test_page_counter_css_keeps_translator_order() -> None:
    assert page_counter_css("Page %(page)s of %(pages)s") == (
        '"Page " counter(page) " of " counter(pages)'
    )
    assert page_counter_css('%(pages)s쪽 중 "%(page)s"') == (
        'counter(pages) "쪽 중 \\"" counter(page) "\\""'
    )


def test_importing_the_renderer_keeps_pillow_strict() -> None:
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # WeasyPrint flips it on import
