"""The clinician web page (`GET /`) and its static JS/CSS (`/static/…`).

The page's strings come from the Babel catalogs through `templates/web/strings.html`; every
language is embedded so the page switches language without a reload. No external requests:
the strict Content-Security-Policy of `hardening` (this origin only, `data:`/`blob:` images
for the preview and the heatmap) applies to it like every response.
"""

from __future__ import annotations

import hashlib
import mimetypes
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment
from litestar import MediaType, Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.params import FromQuery
from litestar.router import Router
from litestar.static_files import create_static_files_router

from service.report.i18n import SUPPORTED_LANGUAGES, jinja_environment, negotiate_language
from service.settings import Settings

PAGE_TEMPLATE = "index.html"
STRINGS_TEMPLATE = "web/strings.html"
STATIC_SUBDIR = "static"
STATIC_FILES = ("app.js", "app.css")
ENDONYMS = {"ko": "한국어", "en": "English", "vi": "Tiếng Việt"}
STATIC_MAX_AGE_S = 86_400


# RFC 9239: JavaScript is text/javascript (Python 3.11's table says application/javascript).
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")


@cache
def _environment(language: str, templates_dir: Path) -> Environment:
    return jinja_environment(language, templates_dir)


@cache
def page_strings(language: str, templates_dir: Path) -> dict[str, str]:
    """Every page string (key → text) in one language."""
    module: Any = _environment(language, templates_dir).get_template(STRINGS_TEMPLATE).module
    return {key: str(text) for key, text in module.strings.items()}


def page_catalog(templates_dir: Path) -> dict[str, dict[str, str]]:
    """All languages' page strings, as embedded in the page for app.js."""
    return {language: page_strings(language, templates_dir) for language in SUPPORTED_LANGUAGES}


def asset_version(static_dir: Path) -> str:
    """A short content hash of the JS and CSS, used as a cache-busting query string."""
    digest = hashlib.sha256()
    for name in STATIC_FILES:
        path = static_dir / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def choose_language(query: str | None, accept_language: str | None, default: str) -> str:
    """`?lang=` when supported, else the best Accept-Language match, else the default."""
    if query and query.strip().lower() in SUPPORTED_LANGUAGES:
        return query.strip().lower()
    return negotiate_language(accept_language, default)


def render_page(language: str, templates_dir: Path) -> str:
    """The page HTML for one language."""
    template = _environment(language, templates_dir).get_template(PAGE_TEMPLATE)
    return template.render(
        s=page_strings(language, templates_dir),
        catalog={"language": language, "strings": page_catalog(templates_dir)},
        languages=[(code, ENDONYMS.get(code, code)) for code in SUPPORTED_LANGUAGES],
        asset_version=asset_version(templates_dir / STATIC_SUBDIR),
    )


@get(
    "/",
    include_in_schema=False,
    media_type=MediaType.HTML,
    sync_to_thread=False,
    opt={"public": True},
)
def index_page(
    request: Request[Any, Any, Any],
    lang: FromQuery[str | None] = None,
) -> Response[str]:
    """The clinician page in the language of `?lang=` or Accept-Language."""
    settings: Settings = request.app.state.settings
    language = choose_language(
        lang, request.headers.get("accept-language"), settings.default_language
    )
    return Response(
        render_page(language, settings.templates_dir),
        media_type=MediaType.HTML,
        headers={
            "Content-Language": language,
            "Vary": "Accept-Language",
            "Cache-Control": "no-cache",
        },
    )


def static_router(templates_dir: Path) -> Router:
    """`/static/app.js`, `/static/app.css` (versioned URLs, cached for a day)."""
    return create_static_files_router(
        path="/static",
        directories=[templates_dir / STATIC_SUBDIR],
        name="web-static",
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE_S, public=True),
        include_in_schema=False,
        opt={"public": True},
    )
