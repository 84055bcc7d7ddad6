"""Playwright (sync API) driving Debian's chromium against the service in a real subprocess.

Playwright never downloads a browser here: it launches /usr/bin/chromium. Outside CI a missing
chromium or playwright skips these tests loudly; under CI=true it fails them.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import IN_CI
from tests.integration.conftest import LiveServer, start_server, stop_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "web"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
MOBILE: ViewportSize = {"width": 375, "height": 812}


def _require_browser() -> None:
    missing = []
    if not (CHROMIUM.is_file() or shutil.which("chromium")):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright Python package (pip install -e '.[dev]')")
    if missing:
        message = "BROWSER TESTS NOT RUN: missing " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for the session."""
    _require_browser()
    from playwright.sync_api import sync_playwright  # optional: only when installed

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service (default settings) on loopback."""
    _require_browser()
    server = start_server(tmp_path_factory.mktemp("web-server"))
    yield server
    stop_server(server)


@dataclass
class PageWatch:
    """What the page did: every request URL, console errors, uncaught exceptions."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def page(browser: Browser, web_server: LiveServer, watch: PageWatch) -> Iterator[Page]:
    """A fresh desktop-sized page; afterwards: no uncaught errors, no request off the origin."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    new_page = context.new_page()
    new_page.set_default_timeout(30_000)
    new_page.on("request", lambda request: watch.requests.append(request.url))
    new_page.on("pageerror", lambda error: watch.page_errors.append(str(error)))

    def on_console(message: Any) -> None:
        if message.type == "error":
            watch.console_errors.append(message.text)

    new_page.on("console", on_console)
    yield new_page
    context.close()
    assert not watch.page_errors, watch.page_errors
    external = [
        url
        for url in watch.requests
        if not url.startswith((web_server.url + "/", "data:", "blob:"))
    ]
    assert not external, f"the page made requests off its origin: {external}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """build/test-artifacts/web/ (git-ignored), for screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
