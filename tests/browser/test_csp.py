"""The clinician page under the strict Content-Security-Policy of `service.api.hardening`.

`test_the_page_works_under_the_strict_policy` enforces that policy on the page document itself
(whatever the server sends), walks the whole flow and requires no CSP violation; a positive
control proves the policy was enforced. `test_the_server_sends_the_strict_policy` checks what the
service sends: it fails until `create_app` wires `security_headers_middleware` (and the page
handler stops setting its own, laxer policy).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from service.api.hardening import CONTENT_SECURITY_POLICY
from tests.support.browser import PageWatch
from tests.support.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = pytest.mark.browser

#: Runs before the page's scripts (injected by the browser, so the CSP does not apply to it).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
    `at ${event.sourceFile}:${event.lineNumber}`
  );
});
"""


def csp_console_errors(watch: PageWatch) -> list[str]:
    return [m for m in watch.console_errors if "Content Security Policy" in m or "Refused to" in m]


def test_the_page_works_under_the_strict_policy(
    page: Page, web_server: LiveServer, watch: PageWatch, skin6_val_images: dict[str, list[Path]]
) -> None:
    served: dict[str, str | None] = {}

    def enforce_strict_policy(route: Route) -> None:
        response = route.fetch()
        served["csp"] = response.headers.get("content-security-policy")
        headers = {**response.headers, "content-security-policy": CONTENT_SECURITY_POLICY}
        route.fulfill(response=response, headers=headers)

    page.route(re.compile(rf"^{re.escape(web_server.url)}/(\?.*)?$"), enforce_strict_policy)
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{web_server.url}/?lang=en")
    page.wait_for_selector("body[data-ready='true']")
    assert served.get("csp"), "the page is served with a Content-Security-Policy"

    page.set_input_files("#file-input", str(skin6_val_images["Carcinoma"][0]))
    page.wait_for_selector("#preview:not([hidden])")
    page.click("#classify-btn")
    page.wait_for_selector("#result .verdict")
    assert page.locator("#bars li").count() == 6
    widths = page.locator("#bars .bar-fill").evaluate_all("els => els.map(e => e.style.width)")
    assert all(width.endswith("%") for width in widths), "CSSOM styles are allowed"
    page.check("#heatmap-toggle")
    assert page.is_visible("#heatmap-img")
    page.select_option("#language", "ko")
    page.select_option("#language", "en")

    page.fill("#patient_name", "Test Patient")
    page.fill("#patient_age", "54")
    page.click("#report-btn")
    page.wait_for_selector("#downloads:not([hidden])", timeout=90_000)
    with page.expect_download() as download_info:
        page.click("#pdf-link")
    assert Path(download_info.value.path()).read_bytes().startswith(b"%PDF")
    if page.is_visible("#fhir-details"):
        page.click("#fhir-details summary")
        page.wait_for_selector("#fhir-json:not(:empty)")

    assert page.evaluate("window.__cspViolations") == []
    assert not csp_console_errors(watch), watch.console_errors

    # positive control: the policy is enforced (an inline script and a style attribute are not)
    page.evaluate(
        """() => {
        const script = document.createElement("script");
        script.textContent = "window.__inlineRan = true";
        document.head.append(script);
        document.body.setAttribute("style", "outline: 1px solid red");
    }"""
    )
    page.wait_for_function("window.__cspViolations.length >= 2")
    assert page.evaluate("window.__inlineRan") is None
    directives = {v.split(" ")[0] for v in page.evaluate("window.__cspViolations")}
    assert directives == {"script-src-elem", "style-src-attr"}, directives


def test_the_server_sends_the_strict_policy(web_server: LiveServer) -> None:
    """Fails until app.py wires the hardening middleware (and web.py drops its own CSP)."""
    paths = ("/", "/static/app.js", "/api/v1/nowhere", "/schema/openapi.json", "/health")
    for path in paths:
        response = httpx.get(f"{web_server.url}{path}")
        assert response.headers.get_list("content-security-policy") == [CONTENT_SECURITY_POLICY], (
            path
        )
        assert response.headers.get_list("x-frame-options") == ["DENY"], path
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], path
        assert response.headers.get_list("referrer-policy") == ["no-referrer"], path
    assert httpx.get(f"{web_server.url}/api/v1/nowhere").headers["cache-control"] == "no-store"
    assert httpx.get(f"{web_server.url}/schema/swagger").status_code == 404, "no HTML docs"
