"""Third-party log records cannot carry request text (service.logging.ThirdPartyRedactor)."""

from __future__ import annotations

import logging
import sys

import pytest

from service.logging import WITHHELD, ThirdPartyRedactor


def _record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    try:
        raise ValueError("value quoted from the file: 홍길동")
    except ValueError:
        exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize("name", ["weasyprint", "fontTools.ttLib", "PIL.PngImagePlugin", "pydicom"])
def test_library_chatter_below_error_is_dropped(name: str) -> None:
    record = _record(name, logging.WARNING, '.notdef glyph: "%s"', "ก")
    assert ThirdPartyRedactor().filter(record) is False


@pytest.mark.parametrize("name", ["weasyprint", "httpx", "multipart.multipart", "asyncio"])
def test_other_third_party_records_keep_only_name_and_level(name: str) -> None:
    record = _record(name, logging.ERROR, "failed on %s", "Somchai Jaidee")
    assert ThirdPartyRedactor().filter(record) is True
    assert record.getMessage() == WITHHELD
    assert record.exc_info is None and record.exc_text is None
    assert record.name == name and record.levelno == logging.ERROR


@pytest.mark.parametrize("name", ["service.api.rest", "uvicorn.error", "litestar"])
def test_our_own_and_the_servers_records_pass_unchanged(name: str) -> None:
    record = _record(name, logging.INFO, "request %s", "r-1")
    assert ThirdPartyRedactor().filter(record) is True
    assert record.getMessage() == "request r-1" and record.exc_info is not None


def test_a_lookalike_name_is_not_our_own() -> None:
    record = _record("service_evil", logging.ERROR, "x %s", "y")
    ThirdPartyRedactor().filter(record)
    assert record.getMessage() == WITHHELD
