"""The clinician page in a real browser against the real service (issue 7)."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from PIL import Image, ImageDraw

from service.api.web import page_strings
from service.settings import Settings
from tests.dicom_factory import vl_photo
from tests.support.browser import DESKTOP, MOBILE, PageWatch
from tests.support.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import FileChooser, Page, Route

pytestmark = pytest.mark.browser

TEMPLATES = Settings().templates_dir
CLASSES = ("Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea")


def strings(language: str) -> dict[str, str]:
    """The page strings the server embeds (from the Babel catalogs)."""
    return page_strings(language, TEMPLATES)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def flat_grey() -> bytes:
    return png_bytes(Image.new("RGB", (320, 240), (128, 128, 128)))


def text_on_white() -> bytes:
    image = Image.new("RGB", (480, 320), "white")
    draw = ImageDraw.Draw(image)
    for row in range(8):
        draw.text((20, 20 + row * 36), "Lorem ipsum dolor sit amet 12345", fill="black")
    return png_bytes(image)


def open_page(page: Page, server: LiveServer, language: str) -> None:
    page.goto(f"{server.url}/?lang={language}")
    page.wait_for_selector("body[data-ready='true']")


def upload(page: Page, path: Path | None = None, *, name: str = "", data: bytes = b"") -> None:
    if path is not None:
        page.set_input_files("#file-input", str(path))
    else:
        mime = "application/dicom" if name.endswith(".dcm") else "image/png"
        page.set_input_files("#file-input", {"name": name, "mimeType": mime, "buffer": data})
    page.wait_for_selector("#preview:not([hidden])")


def classify(page: Page) -> str:
    """Press Classify; returns the verdict status shown."""
    page.click("#classify-btn")
    page.wait_for_selector("#result .verdict")
    return page.get_attribute("#result .verdict", "data-status") or ""


def generate_report(page: Page) -> None:
    page.click("#report-btn")
    page.wait_for_selector("#downloads:not([hidden])", timeout=90_000)


def screenshots(page: Page, artifacts: Path, name: str) -> None:
    """Desktop and 375 px mobile, viewport and full page."""
    for label, size in (("desktop", DESKTOP), ("mobile", MOBILE)):
        page.set_viewport_size(size)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(150)
        page.screenshot(path=str(artifacts / f"{name}-{label}.png"))
        page.screenshot(path=str(artifacts / f"{name}-{label}-full.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def plain(narrative: str) -> str:
    """A Markdown-ish narrative as the page's text shows it, without any whitespace."""
    lines = []
    for line in narrative.splitlines():
        line = re.sub(r"^(#{1,6}\s+|\s*[-*•]\s+|\s*\d+[.)]\s+)", "", line)
        lines.append(line.replace("**", ""))
    return re.sub(r"\s+", "", "".join(lines))


def headings(narrative: str) -> list[str]:
    """The `#` heading lines of a Markdown-ish narrative, as the page shows them."""
    found = []
    for line in narrative.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line.rstrip())
        if match:
            found.append(match.group(1).replace("**", ""))
    return found


# --- served correctly ------------------------------------------------------------------------


def test_page_and_assets_are_served_with_headers(web_server: LiveServer) -> None:
    page = httpx.get(f"{web_server.url}/", headers={"Accept-Language": "vi-VN,vi;q=0.9"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-language"] == "vi"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert '<html lang="vi">' in page.text
    assert httpx.get(f"{web_server.url}/?lang=ko").headers["content-language"] == "ko"
    fallback = httpx.get(f"{web_server.url}/?lang=xx", headers={"Accept-Language": "fr"})
    assert fallback.headers["content-language"] == "en"
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "no external assets"
    for name, media_type in (("app.js", "text/javascript"), ("app.css", "text/css")):
        asset = httpx.get(f"{web_server.url}/static/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(media_type)
        assert "max-age=" in asset.headers["cache-control"]
        assert asset.headers.get("etag")
    schema = httpx.get(f"{web_server.url}/schema/openapi.json").json()
    assert "/" not in schema["paths"], "the page stays out of the API contract"


# --- the main flow in every language -----------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "ko", "vi"])
def test_classify_then_stream_report_and_download_pdf(
    page: Page,
    web_server: LiveServer,
    skin6_val_images: dict[str, list[Path]],
    artifacts: Path,
    language: str,
) -> None:
    s = strings(language)
    open_page(page, web_server, language)
    assert page.get_attribute("html", "lang") == language
    assert page.inner_text("#patient-title") == s["patient.title"]
    assert page.inner_text("label[for=patient_age]") == s["patient.age"]
    assert page.inner_text("#classify-btn") == s["action.classify"]
    assert s["disclaimer.text"] in page.inner_text("footer.disclaimer")
    if language != "en":
        assert s["patient.title"] != strings("en")["patient.title"], "catalog not loaded"

    upload(page, skin6_val_images["Carcinoma"][0])
    assert page.is_visible("#preview-img")
    status = classify(page)
    assert status in {"ok", "inconclusive"}
    bars = page.locator("#bars li")
    assert bars.count() == 6
    names = bars.locator(".bar-name").all_inner_texts()
    assert sorted(names) == sorted(s[f"class.{c}"] for c in CLASSES)
    top = page.get_attribute("#top-label", "data-label")
    assert top in CLASSES
    assert page.inner_text("#top-label") == s[f"class.{top}"]
    assert page.get_attribute("#bars li:first-child", "data-class") == top
    assert "top" in (page.get_attribute("#bars li:first-child", "class") or "")
    assert page.inner_text("#result .badge") == s[f"status.{status}"]
    level = page.get_attribute("#urgent", "data-level")
    assert level in {"urgent", "soon", "routine"}
    assert page.is_visible("#urgent") == (level != "routine")
    if top == "Carcinoma":
        assert level == "urgent"
        assert page.text_content("#urgent .urgent-title") == s["urgent.title"]
    assert page.is_visible("#heatmap-toggle")
    page.check("#heatmap-toggle")
    assert page.is_visible("#heatmap-img")

    page.fill("#patient_name", "Test Patient")
    page.fill("#patient_age", "54")
    page.select_option("#patient_sex", "female")
    page.fill("#history", "Lesion for three months.")
    generate_report(page)
    for step in page.locator(".step").all():
        assert step.get_attribute("data-state") == "done"
    assert page.inner_text("#stream-status") == s["progress.done"]
    chunks = int(page.get_attribute("#narrative", "data-chunks") or 0)
    assert chunks > 1, "the narrative arrived as several report.delta events"
    case_id = page.inner_text("#case-id")
    report = httpx.get(f"{web_server.url}/api/v1/reports/{case_id}").json()
    assert report["language"] == language
    shown = page.locator("#narrative h3, #narrative h4").all_inner_texts()
    assert shown == headings(report["narrative"]), "each heading once, in order"
    assert re.sub(r"\s+", "", page.inner_text("#narrative")) == plain(report["narrative"])

    with page.expect_download() as download_info:
        page.click("#pdf-link")
    pdf = Path(download_info.value.path())
    assert pdf.read_bytes().startswith(b"%PDF")

    if page.is_visible("#fhir-details"):
        page.click("#fhir-details summary")
        page.wait_for_selector("#fhir-json:not(:empty)")
        assert '"resourceType": "DiagnosticReport"' in page.inner_text("#fhir-json")
    screenshots(page, artifacts, f"report-{language}")
    review_in_the_panel(page, web_server, case_id, s, pdf)


def review_in_the_panel(
    page: Page, server: LiveServer, case_id: str, s: dict[str, str], before: Path
) -> None:
    """The clinician signs the report in the page: a revision to eczema with a comment."""
    fhir_accept = {"accept": "application/fhir+json"}
    first = httpx.get(f"{server.url}/fhir/DiagnosticReport/{case_id}", headers=fhir_accept)
    assert first.json()["status"] == "preliminary"
    assert page.is_visible("#review-panel")
    assert page.inner_text("#review-title") == s["review.title"]
    assert page.inner_text("#review-state") == s["review.pending"]
    assert page.is_disabled("#review-finding")
    page.click("#review-btn")
    assert page.inner_text("#review-error") == s["review.error.name"], "a name is required"
    page.fill("#review-name", "Dr. Test Reviewer")
    page.fill("#review-id", "LIC-1")
    page.check('input[name="review-decision"][value="revise"]')
    assert not page.is_disabled("#review-finding")
    assert page.inner_text("#review-finding option[value=Eczema]") == s["class.Eczema"]
    page.select_option("#review-finding", "Eczema")
    page.fill("#review-comment", "Nummular eczema, reviewed in clinic.")
    page.click("#review-btn")
    page.wait_for_selector('#review-state[data-state="reviewed"]')
    shown = page.inner_text("#review-state")
    assert "Dr. Test Reviewer" in shown and s["review.revise"] in shown and "2" in shown
    fhir = httpx.get(f"{server.url}/fhir/DiagnosticReport/{case_id}", headers=fhir_accept).json()
    assert fhir["status"] == "amended" and fhir["meta"]["versionId"] == "2"
    assert fhir["resultsInterpreter"][0]["display"] == "Dr. Test Reviewer"
    pdf = httpx.get(f"{server.url}/api/v1/reports/{case_id}.pdf").content
    assert pdf.startswith(b"%PDF") and pdf != before.read_bytes()
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    assert "Dr. Test Reviewer" in text and "Nummular eczema" in " ".join(text.split())


def test_language_switch_in_place_keeps_the_result(
    page: Page, web_server: LiveServer, skin6_val_images: dict[str, list[Path]]
) -> None:
    open_page(page, web_server, "en")
    upload(page, skin6_val_images["Acne"][0])
    classify(page)
    for language in ("ko", "vi", "en"):
        s = strings(language)
        page.select_option("#language", language)
        assert page.get_attribute("html", "lang") == language
        assert page.url.endswith(f"lang={language}")
        assert page.inner_text("#report-btn") == s["action.report"]
        assert page.inner_text("#result-title") == s["result.title"]
        names = page.locator("#bars .bar-name").all_inner_texts()
        assert sorted(names) == sorted(s[f"class.{c}"] for c in CLASSES)


# --- the gate's verdicts ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make"), [("grey", flat_grey), ("text", text_on_white)])
def test_rejected_image_shows_localized_reasons(
    page: Page, web_server: LiveServer, artifacts: Path, name: str, make: Any
) -> None:
    data = make()
    expected = httpx.post(
        f"{web_server.url}/api/v1/classify", files={"image": (f"{name}.png", data, "image/png")}
    ).json()
    assert expected["status"] == "rejected", expected
    s = strings("ko")
    open_page(page, web_server, "ko")
    upload(page, name=f"{name}.png", data=data)
    assert classify(page) == "rejected"
    assert page.inner_text("#result .badge") == s["status.rejected"]
    assert page.locator("#bars").count() == 0
    assert page.is_hidden("#heatmap-toggle")
    codes = page.locator("#result li[data-reason]").evaluate_all(
        "items => items.map(item => item.dataset.reason)"
    )
    assert codes and set(expected["reasons"]) <= set(codes)
    for code in codes:
        text = page.inner_text(f"#result li[data-reason='{code}']")
        assert s.get(f"reason.{code}", code) in text
    screenshots(page, artifacts, f"rejected-{name}-ko")


def test_dicom_file_shows_badge_and_classifies(page: Page, web_server: LiveServer) -> None:
    image = Image.new("RGB", (256, 256), (205, 150, 130))
    open_page(page, web_server, "en")
    upload(page, name="lesion.dcm", data=vl_photo(image))
    assert page.is_visible("#dicom-card .badge-dicom")
    assert page.is_hidden("#preview-img")
    assert page.inner_text("#file-name") == "lesion.dcm"
    assert classify(page) in {"ok", "inconclusive", "rejected"}


# --- resilience and validation -----------------------------------------------------------------


def test_lost_connection_reattaches_with_last_event_id(
    page: Page, web_server: LiveServer, skin6_val_images: dict[str, list[Path]], watch: PageWatch
) -> None:
    """The first stream is cut after two report.delta events; the page re-attaches to
    /api/v1/jobs/{id}/events with Last-Event-ID and the text is not duplicated."""
    image = skin6_val_images["Carcinoma"][0]
    cut: dict[str, Any] = {}
    resumed: list[dict[str, str]] = []

    def truncate(route: Route) -> None:
        # Playwright cannot replay a multipart body with a file, so the same upload is sent
        # here; the page gets the job's id and only the first frames of its stream.
        response = httpx.post(
            f"{web_server.url}/api/v1/diagnose-stream",
            files={"image": (image.name, image.read_bytes(), "image/jpeg")},
            data={"language": "en"},
            timeout=90,
        )
        frames = response.text.split("\n\n")
        deltas = [i for i, frame in enumerate(frames) if "event: report.delta" in frame]
        keep = frames[: deltas[min(1, len(deltas) - 1)] + 1]
        cut["last_id"] = re.search(r"^id: (\d+)$", keep[-1], re.M).group(1)  # type: ignore[union-attr]
        route.fulfill(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "X-Job-Id": response.headers["x-job-id"],
            },
            body="\n\n".join(keep) + "\n\n",
        )

    page.route("**/api/v1/diagnose-stream", truncate)
    page.on(
        "request",
        lambda request: resumed.append(request.headers) if "/events" in request.url else None,
    )
    open_page(page, web_server, "en")
    upload(page, image)
    generate_report(page)
    assert resumed, "the page re-attached"
    assert resumed[0].get("last-event-id") == cut["last_id"]
    report = httpx.get(f"{web_server.url}/api/v1/reports/{page.inner_text('#case-id')}").json()
    shown = page.locator("#narrative h3, #narrative h4").all_inner_texts()
    assert shown == headings(report["narrative"])
    assert re.sub(r"\s+", "", page.inner_text("#narrative")) == plain(report["narrative"])


def test_age_validation_and_server_field_errors(
    page: Page, web_server: LiveServer, skin6_val_images: dict[str, list[Path]]
) -> None:
    s = strings("vi")
    posted: list[str] = []
    page.on("request", lambda r: posted.append(r.url) if "diagnose" in r.url else None)
    open_page(page, web_server, "vi")
    upload(page, skin6_val_images["Milia"][0])
    for bad in ("abc", "131", "-1", "4.5"):
        page.fill("#patient_age", bad)
        page.press("#patient_age", "Tab")
        assert page.inner_text("#error-patient_age") == s["error.age"]
        assert page.get_attribute("#patient_age", "aria-invalid") == "true"
    page.click("#report-btn")
    assert not posted, "an invalid form is not sent"
    page.fill("#patient_age", "130")
    page.press("#patient_age", "Tab")
    assert page.inner_text("#error-patient_age") == ""

    # The server's 422 field errors land next to their fields (name: 201 characters).
    page.evaluate("document.getElementById('patient_name').removeAttribute('maxlength')")
    page.fill("#patient_name", "x" * 201)
    page.click("#report-btn")
    page.wait_for_selector("#error-patient_name:not(:empty)")
    assert "200" in page.inner_text("#error-patient_name")
    assert page.get_attribute("#patient_name", "aria-invalid") == "true"


def test_keyboard_reaches_drop_zone_and_opens_chooser(
    page: Page, web_server: LiveServer, skin6_val_images: dict[str, list[Path]], artifacts: Path
) -> None:
    choosers: list[FileChooser] = []
    page.on(
        "filechooser", lambda chooser: choosers.append(chooser)
    )  # listening from the start intercepts every chooser

    def wait_for_choosers(count: int) -> None:
        for _ in range(100):
            if len(choosers) >= count:
                return
            page.wait_for_timeout(50)
        raise AssertionError(f"{count} file chooser(s) expected, saw {len(choosers)}")

    open_page(page, web_server, "en")
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "dropzone":
            break
    assert page.evaluate("document.activeElement.id") == "dropzone"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "visible focus"
    page.screenshot(path=str(artifacts / "focus-dropzone.png"))
    page.keyboard.press("Enter")
    wait_for_choosers(1)
    choosers[0].set_files(str(skin6_val_images["Rosacea"][0]))
    page.wait_for_selector("#preview:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "dropzone"
    page.keyboard.press("Space")
    wait_for_choosers(2)
