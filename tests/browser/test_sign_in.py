"""The clinician page signs in with an API key when authentication is on (security item 11).

With `SKINSCREEN_AUTH=on` every API call needs `X-API-Key`: the page asks for the key in a modal
sign-in panel on the first 401, keeps it in sessionStorage only and sends it with every call
(classify, the SSE stream, the re-attach with Last-Event-ID, the PDF and FHIR downloads). With
auth off (the other browser tests) the page never shows the panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from service.api.web import page_strings
from service.settings import Settings
from tests.support.browser import DESKTOP, MOBILE, PageWatch, require_browser
from tests.support.clients import write_clients
from tests.support.live_server import LiveServer, start_server, stop_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

pytestmark = pytest.mark.browser

TEMPLATES = Settings().templates_dir
API_KEY = "sk_web_test_" + "k" * 24
WRONG_KEY = "sk_web_test_wrong"
STORE = "skinscreen.apiKey"
SCOPES = ["system/DiagnosticReport.cruds"]


def strings(language: str) -> dict[str, str]:
    return page_strings(language, TEMPLATES)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service with auth on and one client (`web`) holding API_KEY."""
    require_browser()
    tmp = tmp_path_factory.mktemp("auth-web-server")
    clients = write_clients(tmp / "clients.json", {"web": (SCOPES, API_KEY)})
    server = start_server(
        tmp, {"SKINSCREEN_AUTH": "on", "SKINSCREEN_CLIENTS_FILE": str(clients)}, name="auth"
    )
    yield server
    stop_server(server)


class Seen:
    """Every request the page made: URL and headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

    def to(self, part: str) -> list[dict[str, str]]:
        return [headers for url, headers in self.requests if part in url]


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def auth_page(
    browser: Browser, auth_server: LiveServer, watch: PageWatch, seen: Seen
) -> Iterator[Page]:
    """A desktop page on the auth-on server; afterwards: no uncaught errors, nothing off the
    origin, and the key never in a URL."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    new_page = context.new_page()
    new_page.set_default_timeout(30_000)
    new_page.on("request", lambda r: seen.requests.append((r.url, r.headers)))
    new_page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    yield new_page
    context.close()
    assert not watch.page_errors, watch.page_errors
    urls = [url for url, _ in seen.requests]
    external = [u for u in urls if not u.startswith((auth_server.url + "/", "data:", "blob:"))]
    assert not external, f"the page made requests off its origin: {external}"
    assert not [u for u in urls if API_KEY in u or WRONG_KEY in u], "a key in a URL"


def open_page(page: Page, server: LiveServer, language: str) -> None:
    page.goto(f"{server.url}/?lang={language}")
    page.wait_for_selector("body[data-ready='true']")


def upload(page: Page, path: Path) -> None:
    page.set_input_files("#file-input", str(path))
    page.wait_for_selector("#preview:not([hidden])")


def panel_open(page: Page) -> bool:
    return bool(page.evaluate("document.getElementById('sign-in').open"))


def wait_for_panel(page: Page) -> None:
    page.wait_for_selector("#sign-in[open]")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'api-key'")


def stored(page: Page) -> dict[str, Any]:
    """What the page keeps in web storage and cookies."""
    found: dict[str, Any] = page.evaluate(
        f"""() => ({{
          session: sessionStorage.getItem({STORE!r}),
          sessionKeys: Object.keys(sessionStorage),
          local: Object.keys(localStorage).length,
          cookie: document.cookie,
        }})"""
    )
    return found


def screenshots(page: Page, artifacts: Path, name: str) -> None:
    """Desktop and 375 px mobile, what the viewport shows."""
    for label, size in (("desktop", DESKTOP), ("mobile", MOBILE)):
        page.set_viewport_size(size)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(150)
        page.screenshot(path=str(artifacts / f"{name}-{label}.png"))
    page.set_viewport_size(DESKTOP)


def test_the_service_requires_a_key(auth_server: LiveServer) -> None:
    """The prerequisite the page relies on: the page is open, the API answers 401."""
    assert httpx.get(f"{auth_server.url}/").status_code == 200
    assert httpx.get(f"{auth_server.url}/static/app.js").status_code == 200
    refused = httpx.post(f"{auth_server.url}/api/v1/classify", files={"image": ("a.png", b"x")})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_sign_in_classify_stream_download_and_sign_out(
    auth_page: Page,
    auth_server: LiveServer,
    seen: Seen,
    skin6_val_images: dict[str, list[Path]],
    artifacts: Path,
) -> None:
    page, s = auth_page, strings("en")
    open_page(page, auth_server, "en")
    assert not panel_open(page)
    assert page.is_hidden("#auth-button"), "nothing about signing in before the service asks"

    # The first call answers 401: the panel opens, focus on the password-type key input.
    upload(page, skin6_val_images["Carcinoma"][0])
    page.click("#classify-btn")
    wait_for_panel(page)
    assert page.get_attribute("#api-key", "type") == "password"
    assert page.inner_text("label[for=api-key]") == s["auth.key"]
    assert page.inner_text("#sign-in-title") == s["auth.title"]
    assert page.inner_text("#sign-in-submit") == s["auth.submit"]
    assert page.get_attribute("#api-key", "name") is None, "never part of a submitted form"
    assert seen.to("/api/v1/classify")[0].get("x-api-key") is None
    screenshots(page, artifacts, "sign-in-en")

    # A wrong key (submitted with Enter): 401 again, the panel says so, no result.
    page.fill("#api-key", WRONG_KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#api-key-error:not(:empty)")
    assert page.inner_text("#api-key-error") == s["auth.rejected"]
    assert page.get_attribute("#api-key", "aria-invalid") == "true"
    assert panel_open(page)
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert page.locator("#result .verdict").count() == 0
    assert seen.to("/api/v1/classify")[-1].get("x-api-key") == WRONG_KEY
    assert stored(page)["session"] is None, "a refused key is not kept"
    screenshots(page, artifacts, "sign-in-rejected-en")

    # The keyboard reaches the buttons; the right key retries the classification.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "sign-in-submit"
    page.fill("#api-key", API_KEY)
    page.click("#sign-in-submit")
    page.wait_for_selector("#result .verdict")
    assert not panel_open(page)
    assert page.locator("#bars li").count() == 6
    assert page.inner_text("#form-error") == ""
    assert seen.to("/api/v1/classify")[-1].get("x-api-key") == API_KEY
    kept = stored(page)
    assert kept["session"] == API_KEY
    assert kept["sessionKeys"] == [STORE]
    assert kept["local"] == 0, "never in localStorage"
    assert kept["cookie"] == "" and page.context.cookies() == [], "never in a cookie"
    assert page.is_visible("#auth-button")
    assert page.inner_text("#auth-button") == s["auth.signout"]

    # The streamed report (fetch + ReadableStream) completes with the key.
    page.fill("#patient_age", "61")
    page.click("#report-btn")
    page.wait_for_selector("#downloads:not([hidden])", timeout=90_000)
    assert page.inner_text("#stream-status") == s["progress.done"]
    for step in page.locator(".step").all():
        assert step.get_attribute("data-state") == "done"
    assert int(page.get_attribute("#narrative", "data-chunks") or 0) > 1
    assert [h.get("x-api-key") for h in seen.to("/api/v1/diagnose-stream")] == [API_KEY]
    case_id = page.inner_text("#case-id")
    headers = {"X-API-Key": API_KEY}
    report = httpx.get(f"{auth_server.url}/api/v1/reports/{case_id}", headers=headers)
    assert report.status_code == 200 and report.json()["language"] == "en"
    screenshots(page, artifacts, "signed-in-en")

    # Downloads carry the key (fetch + blob): the PDF, the FHIR JSON and the inline FHIR view.
    with page.expect_download() as pdf_download:
        page.click("#pdf-link")
    assert pdf_download.value.suggested_filename == f"skinscreen-{case_id}.pdf"
    assert Path(pdf_download.value.path()).read_bytes().startswith(b"%PDF")
    assert seen.to(f"/api/v1/reports/{case_id}.pdf")[-1].get("x-api-key") == API_KEY
    if page.is_visible("#fhir-link"):
        with page.expect_download() as fhir_download:
            page.click("#fhir-link")
        fhir = json.loads(Path(fhir_download.value.path()).read_text())
        assert fhir["resourceType"] == "DiagnosticReport"
        page.click("#fhir-details summary")
        page.wait_for_selector("#fhir-json:not(:empty)")
        assert '"resourceType": "DiagnosticReport"' in page.inner_text("#fhir-json")
        assert all(h.get("x-api-key") == API_KEY for h in seen.to("/fhir/DiagnosticReport/"))

    # Sign out clears the key; the next call asks again; Escape cancels, and the page says why.
    page.click("#auth-button")
    assert stored(page)["session"] is None
    assert page.inner_text("#auth-button") == s["auth.signin"]
    assert page.evaluate("document.activeElement.id") == "auth-button", "focus stays put"
    assert page.inner_text("#auth-status") == s["auth.signedout"]
    calls = len(seen.to("/api/v1/classify"))
    page.click("#classify-btn")
    wait_for_panel(page)
    assert page.inner_text("#api-key-error") == "", "a fresh prompt, not an error"
    assert seen.to("/api/v1/classify")[calls].get("x-api-key") is None
    page.keyboard.press("Escape")
    page.wait_for_selector("#sign-in", state="hidden")
    page.wait_for_selector("#form-error:not(:empty)")
    assert page.inner_text("#form-error") == s["auth.required"]
    assert page.is_enabled("#classify-btn")


def test_korean_panel_and_sign_in_button(
    auth_page: Page,
    auth_server: LiveServer,
    skin6_val_images: dict[str, list[Path]],
    artifacts: Path,
) -> None:
    s = strings("ko")
    assert s["auth.title"] != strings("en")["auth.title"], "catalog not loaded"
    page = auth_page
    open_page(page, auth_server, "ko")
    upload(page, skin6_val_images["Acne"][0])
    page.click("#classify-btn")
    wait_for_panel(page)
    assert page.inner_text("#sign-in-title") == s["auth.title"]
    assert page.inner_text("label[for=api-key]") == s["auth.key"]
    assert page.inner_text("#sign-in-intro") == s["auth.intro"]
    assert page.inner_text("#sign-in-cancel") == s["auth.cancel"]
    screenshots(page, artifacts, "sign-in-ko")
    page.fill("#api-key", WRONG_KEY)
    page.click("#sign-in-submit")
    page.wait_for_selector("#api-key-error:not(:empty)")
    assert page.inner_text("#api-key-error") == s["auth.rejected"]
    screenshots(page, artifacts, "sign-in-rejected-ko")

    # Cancel with the button: the action stops with a localized message.
    page.click("#sign-in-cancel")
    page.wait_for_selector("#form-error:not(:empty)")
    assert page.inner_text("#form-error") == s["auth.required"]
    assert page.locator("#result .verdict").count() == 0

    # "로그인" in the top bar (auth is known to be on) opens the panel without a pending call.
    assert page.inner_text("#auth-button") == s["auth.signin"]
    page.click("#auth-button")
    wait_for_panel(page)
    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Enter")
    page.wait_for_selector("#sign-in", state="hidden")
    assert page.inner_text("#auth-button") == s["auth.signout"]
    page.click("#classify-btn")
    page.wait_for_selector("#result .verdict")
    assert not panel_open(page)
    screenshots(page, artifacts, "signed-in-ko")


def test_reattach_sends_the_key_with_last_event_id(
    auth_page: Page,
    auth_server: LiveServer,
    seen: Seen,
    skin6_val_images: dict[str, list[Path]],
) -> None:
    """A key stored earlier in this tab is used at once (no panel); the stream is cut after two
    report.delta events and the re-attach to /jobs/{id}/events carries the key too."""
    image = skin6_val_images["Carcinoma"][0]
    cut: dict[str, str] = {}

    def truncate(route: Route) -> None:
        cut["key"] = route.request.headers.get("x-api-key", "")
        response = httpx.post(
            f"{auth_server.url}/api/v1/diagnose-stream",
            files={"image": (image.name, image.read_bytes(), "image/jpeg")},
            data={"language": "en"},
            headers={"X-API-Key": API_KEY},
            timeout=90,
        )
        frames = response.text.split("\n\n")
        deltas = [i for i, frame in enumerate(frames) if "event: report.delta" in frame]
        keep = frames[: deltas[min(1, len(deltas) - 1)] + 1]
        cut["last_id"] = re.findall(r"^id: (\d+)$", keep[-1], re.M)[-1]
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream", "X-Job-Id": response.headers["x-job-id"]},
            body="\n\n".join(keep) + "\n\n",
        )

    page = auth_page
    open_page(page, auth_server, "en")
    page.evaluate(f"sessionStorage.setItem({STORE!r}, {API_KEY!r})")
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert page.inner_text("#auth-button") == strings("en")["auth.signout"]
    page.route("**/api/v1/diagnose-stream", truncate)
    upload(page, image)
    page.click("#report-btn")
    page.wait_for_selector("#downloads:not([hidden])", timeout=90_000)
    assert not panel_open(page)
    assert cut["key"] == API_KEY, "the stream request carries the stored key"
    resumed = seen.to("/events")
    assert resumed, "the page re-attached"
    assert resumed[0].get("last-event-id") == cut["last_id"]
    assert all(h.get("x-api-key") == API_KEY for h in resumed)


def test_auth_off_shows_no_sign_in(
    page: Page, web_server: LiveServer, skin6_val_images: dict[str, list[Path]]
) -> None:
    """The default (auth off, loopback): no panel, no sign-out control, no key sent."""
    sent: list[dict[str, str]] = []
    page.on("request", lambda r: sent.append(r.headers) if "/api/" in r.url else None)
    page.goto(f"{web_server.url}/?lang=en")
    page.wait_for_selector("body[data-ready='true']")
    upload(page, skin6_val_images["Acne"][0])
    page.click("#classify-btn")
    page.wait_for_selector("#result .verdict")
    assert not panel_open(page)
    assert page.is_hidden("#auth-button")
    assert sent and all("x-api-key" not in headers for headers in sent)
    assert stored(page)["sessionKeys"] == []
