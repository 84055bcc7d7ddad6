"""The page shows the checked narrative only: a stalled LLM's first text is replaced on
`report.reset` by the knowledge narrative the report carries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.browser import DESKTOP, require_browser
from tests.support.faulty_llm import FIRST, FaultyLlm
from tests.support.live_server import LiveServer, start_server, stop_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stalled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_browser()
    with FaultyLlm("stall") as llm:
        server = start_server(
            tmp_path_factory.mktemp("web-stall"),
            {
                "SKINSCREEN_NARRATOR": "openai",
                "SKINSCREEN_OPENAI_BASE_URL": llm.url,
                "SKINSCREEN_OPENAI_SEND_IMAGE": "false",
                "SKINSCREEN_LLM_INTER_TOKEN_S": "1.5",
            },
        )
        yield server
        stop_server(server)


def test_the_page_replaces_superseded_text(
    browser: Browser, stalled_server: LiveServer, skin6_val_images: dict[str, list[Path]]
) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{stalled_server.url}/?lang=en")
        page.wait_for_selector("body[data-ready='true']")
        page.set_input_files("#file-input", str(skin6_val_images["Acne"][0]))
        page.wait_for_selector("#preview:not([hidden])")
        page.click("#classify-btn")
        page.wait_for_selector("#result .verdict")
        page.click("#report-btn")
        page.wait_for_selector("#downloads:not([hidden])", timeout=60_000)
        assert page.is_visible("#fallback-notice")
        shown = re.sub(r"\s+", "", page.inner_text("#narrative"))
        job = page.evaluate("() => document.querySelector('#pdf-link').getAttribute('href')")
    finally:
        context.close()
    assert not errors, errors
    assert re.sub(r"\s+", "", FIRST.removeprefix("## Observations")) not in shown
    report = httpx.get(stalled_server.url + job.removesuffix(".pdf")).json()
    words = re.findall(r"\w{6,}", report["narrative"])
    assert words and all(word in shown for word in words[:40])  # the knowledge text is shown
