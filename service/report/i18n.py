"""Catalogs for ko/en/vi, compiled in memory from the `.po` files, and locale formatting.

Translator workflow (no compile step; `.mo` files are never needed):
`pybabel extract -F babel.cfg --sort-output --no-location -o translations/messages.pot .`
then `pybabel update -i translations/messages.pot -d translations` and translate.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from functools import cache, partial
from pathlib import Path

from babel.dates import format_datetime
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_percent as babel_format_percent
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service.errors import UnsupportedLanguage
from service.pipeline.domain import LANGUAGES
from service.settings import REPO_ROOT

TRANSLATIONS_DIR = REPO_ROOT / "translations"
TEMPLATES_DIR = REPO_ROOT / "templates"
DOMAIN = "messages"
SUPPORTED_LANGUAGES: tuple[str, ...] = LANGUAGES
_MAX_ACCEPT_LANGUAGE_ITEMS = 32


class CatalogError(RuntimeError):
    """A supported locale's catalog is missing, unreadable or empty (a deployment fault)."""


def _check_language(language: str) -> None:
    if language not in SUPPORTED_LANGUAGES:
        raise UnsupportedLanguage(
            f"language must be one of {', '.join(SUPPORTED_LANGUAGES)}", expression=["language"]
        )


def load_catalog(language: str, directory: Path = TRANSLATIONS_DIR) -> Catalog:
    """Parse `<directory>/<language>/LC_MESSAGES/messages.po`."""
    path = directory / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language, domain=DOMAIN)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read the {language!r} catalog at {path}") from exc
    if str(catalog.locale) != language:
        raise CatalogError(f"{path} declares locale {catalog.locale}, expected {language}")
    return catalog


def compile_translations(language: str, directory: Path = TRANSLATIONS_DIR) -> Translations:
    """Compile a `.po` catalog in memory; raise `CatalogError` when it is absent or empty
    (where `Translations.load` would silently return `NullTranslations`)."""
    catalog = load_catalog(language, directory)
    if not any(message.id and message.string and not message.fuzzy for message in catalog):
        raise CatalogError(f"the {language!r} catalog has no translated messages")
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


@cache
def get_translations(language: str) -> Translations:
    """The translations of a supported language, compiled once per process."""
    _check_language(language)
    return compile_translations(language)


def gettext(language: str, msgid: str) -> str:
    """Translate one message."""
    return get_translations(language).gettext(msgid)


def format_datetime_local(dt: datetime | str, language: str) -> str:
    """A date-time in the locale's medium format, in UTC (naive values are taken as UTC)."""
    _check_language(language)
    value = datetime.fromisoformat(dt) if isinstance(dt, str) else dt
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return f"{format_datetime(value, 'medium', tzinfo=UTC, locale=language)} UTC"


def format_percent(p: float, language: str) -> str:
    """A probability in [0, 1] as a locale percentage with one decimal (`12.3%`, `12,3%`)."""
    _check_language(language)
    return babel_format_percent(p, "#,##0.0%", locale=language)


def negotiate_language(accept_language_header: str | None, default: str) -> str:
    """Pick the best supported language from an `Accept-Language` header (RFC 9110 q-values)."""
    candidates: list[tuple[float, int, str]] = []
    items = (accept_language_header or "").split(",")[:_MAX_ACCEPT_LANGUAGE_ITEMS]
    for position, item in enumerate(items):
        tag, *params = item.strip().split(";")
        quality = 1.0
        for param in params:
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if quality > 0 and primary:
            candidates.append((-quality, position, default if primary == "*" else primary))
    for _, _, language in sorted(candidates):
        if language in SUPPORTED_LANGUAGES:
            return language
    return default


def jinja_environment(language: str, templates_dir: Path = TEMPLATES_DIR) -> Environment:
    """An autoescaping Jinja2 environment with the language's catalog installed (`_`,
    `{% trans %}`, newstyle) and the `percent` / `datetime_local` filters bound to it.

    One environment per language keeps rendering thread-safe; build them once and reuse them.
    """
    env = Environment(
        loader=FileSystemLoader(templates_dir),
        autoescape=select_autoescape(["html", "xml"]),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(  # type: ignore[attr-defined]
        get_translations(language), newstyle=True
    )
    env.filters["percent"] = partial(format_percent, language=language)
    env.filters["datetime_local"] = partial(format_datetime_local, language=language)
    env.globals["language"] = language
    return env
