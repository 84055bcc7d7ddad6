"""Playwright (sync API) driving Debian's chromium against the service in a real subprocess.

The helpers (chromium, viewports, `PageWatch`) live in `tests.support.browser`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PageWatch,
    require_browser,
)
from tests.support.live_server import LiveServer, start_server, stop_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for the session."""
    require_browser()
    from playwright.sync_api import sync_playwright  # optional: only when installed

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service (default settings) on loopback."""
    require_browser()
    server = start_server(tmp_path_factory.mktemp("web-server"))
    yield server
    stop_server(server)


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
