"""Catalogs really load, are complete and current; locale formatting and negotiation."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from babel.support import Translations

from service.errors import UnsupportedLanguage
from service.report.i18n import (
    SUPPORTED_LANGUAGES,
    TRANSLATIONS_DIR,
    CatalogError,
    compile_translations,
    format_datetime_local,
    format_percent,
    get_translations,
    gettext,
    jinja_environment,
    load_catalog,
    negotiate_language,
)
from service.settings import REPO_ROOT


def _pot_ids() -> set[str]:
    with (TRANSLATIONS_DIR / "messages.pot").open("rb") as handle:
        return {str(message.id) for message in read_po(handle) if message.id}


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_locale_loads_from_its_po_file(language: str) -> None:
    translations = get_translations(language)
    assert isinstance(translations, Translations)
    expected = {
        "ko": "피부 선별 검사 보고서",
        "en": "Skin screening report",
        "vi": "Báo cáo sàng lọc da",
    }
    assert gettext(language, "Skin screening report") == expected[language]


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_msgid_is_translated_and_formats_match(language: str) -> None:
    catalog = load_catalog(language)
    translated = {str(m.id) for m in catalog if m.id and m.string and not m.fuzzy}
    assert translated == _pot_ids()  # nothing missing, empty, fuzzy or obsolete
    problems = [(m.id, errors) for m in catalog for errors in [list(m.check(catalog))] if errors]
    assert problems == []  # e.g. a translator dropped "%(page)s"


def test_pot_is_current_with_the_sources() -> None:
    with (REPO_ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)  # type: ignore[no-untyped-call]
    extracted = {
        str(message if isinstance(message, str) else message[0])
        for _, _, message, _, _ in extract_from_dir(REPO_ROOT, method_map, options_map)
    }
    assert extracted == _pot_ids(), "run the pybabel commands in service/report/i18n.py"


def test_missing_or_empty_catalog_raises(tmp_path: Path) -> None:
    with pytest.raises(CatalogError):
        compile_translations("ko", tmp_path)
    (tmp_path / "ko" / "LC_MESSAGES").mkdir(parents=True)
    shutil.copy(TRANSLATIONS_DIR / "messages.pot", tmp_path / "ko" / "LC_MESSAGES" / "messages.po")
    with pytest.raises(CatalogError):
        compile_translations("ko", tmp_path)  # a catalog with no translations
    with pytest.raises(UnsupportedLanguage):
        get_translations("fr")


def test_locale_formatting() -> None:
    assert format_percent(0.1234, "en") == "12.3%"
    assert format_percent(0.1234, "vi") == "12,3%"
    when = datetime(2025, 3, 4, 14, 5)
    assert format_datetime_local(when, "en") == "Mar 4, 2025, 2:05:00\u202fPM UTC"
    assert format_datetime_local("2025-03-04T23:05:00+09:00", "ko").startswith("2025. 3. 4.")
    assert "thg 3, 2025" in format_datetime_local(when, "vi")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("vi-VN,vi;q=0.9,en;q=0.8", "vi"),
        ("fr-FR, KO-kr;q=0.5", "ko"),
        ("en;q=0, ko;q=0.1", "ko"),
        ("en;q=0.2, vi;q=0.9", "vi"),
        ("fr, de;q=bogus", "en"),
        ("*", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_negotiate_language(header: str | None, expected: str) -> None:
    assert negotiate_language(header, "en") == expected


def test_jinja_environment_translates_and_escapes() -> None:
    env = jinja_environment("ko")
    template = env.from_string(
        "{{ _('Patient') }} {{ 0.5 | percent }} {% trans age=x %}{{ age }} years{% endtrans %}"
    )
    assert template.render(x="<i>") == "환자 50.0% &lt;i&gt;세"
