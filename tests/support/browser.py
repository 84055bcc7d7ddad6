"""Playwright helpers: Debian's chromium, viewports, what a page did, and the prerequisite check.

Playwright never downloads a browser here: it launches /usr/bin/chromium. Outside CI a missing
chromium or playwright skips the browser tests loudly; under CI=true it fails them.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.ci import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

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
#: build/test-artifacts/web/ (git-ignored), for screenshots.
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "web"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
MOBILE: ViewportSize = {"width": 375, "height": 812}


def require_browser() -> None:
    """Skip (fail under CI) when chromium or playwright is missing."""
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


@dataclass
class PageWatch:
    """What the page did: every request URL, console errors, uncaught exceptions."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
