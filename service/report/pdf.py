"""Render a `Report` to a PDF/A-3b document with WeasyPrint (ko, en, vi)."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import weasyprint
from PIL import Image, ImageFile
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher

from service.errors import ServiceUnavailable
from service.pipeline.domain import Attachment, Report
from service.report.i18n import (
    SUPPORTED_LANGUAGES,
    TEMPLATES_DIR,
    get_translations,
    jinja_environment,
)
from service.report.labels import PAGE_OF
from service.report.text import TextLimits
from service.report.view import report_context

# WeasyPrint sets this to True at import, which makes Pillow fill truncated JPEG/J2K data with
# grey instead of failing — for every decode in the process, uploads included. Our PDFs only
# embed images we produced ourselves, so strict decoding is restored here.
ImageFile.LOAD_TRUNCATED_IMAGES = False

PDF_VARIANT = "pdf/a-3b"
#: Seconds one layout may take before the run is refused (`SKINSCREEN_PDF_RENDER_BUDGET_S`).
DEFAULT_RENDER_BUDGET_S = 20.0


class RenderTimeout(ServiceUnavailable):
    """The PDF layout ran past its time budget; the run fails instead of holding its slot."""

    code, title = "render-timeout", "The PDF report took too long to lay out"


class LocalOnlyFetcher(URLFetcher):  # type: ignore[misc]
    """Refuses every URL except `data:` and files under the templates directory."""

    def __init__(self, root: Path) -> None:
        super().__init__(allowed_protocols={"data", "file"}, fail_on_errors=True)
        self._root = root.resolve()

    def fetch(self, url: str, headers: Any = None) -> Any:
        """Fetch `url` if allowed; raise `ValueError` otherwise (rendering then stops)."""
        scheme = url.partition(":")[0].lower()
        if scheme == "file":
            path = Path(url2pathname(urlsplit(url).path)).resolve()
            if not path.is_relative_to(self._root):
                raise ValueError("file URL outside the templates directory")
        elif scheme != "data":
            raise ValueError(f"refusing to fetch a {scheme!r} URL")
        return super().fetch(url, headers)


def _css_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def page_counter_css(template: str) -> str:
    """CSS `content` for a translated "Page %(page)s of %(pages)s" string."""
    chunks = (template % {"page": "\0page\0", "pages": "\0pages\0"}).split("\0")
    parts = [
        f"counter({chunk})" if index % 2 else _css_string(chunk)
        for index, chunk in enumerate(chunks)
        if chunk
    ]
    return " ".join(parts)


def jpeg_data_uri(image: Image.Image, max_side: int, quality: int = 85) -> str:
    """Downscale (never upscale) to fit `max_side` and encode as a JPEG data URI."""
    picture = image.convert("RGB")
    picture.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode("ascii")


class PdfRenderer:
    """Parses the templates and stylesheets once; `render` is then thread-safe and fast."""

    def __init__(
        self,
        templates_dir: Path = TEMPLATES_DIR,
        image_max_side: int = 800,
        text_limits: TextLimits | None = None,
        budget_s: float = DEFAULT_RENDER_BUDGET_S,
    ) -> None:
        self._budget_s = budget_s
        self._templates_dir = templates_dir
        self._text_limits = text_limits or TextLimits()
        self._fetcher = LocalOnlyFetcher(templates_dir)
        self._base_url = templates_dir.resolve().as_uri() + "/"
        self._image_max_side = image_max_side
        self._templates = {
            language: jinja_environment(language, templates_dir).get_template("report.html")
            for language in SUPPORTED_LANGUAGES
        }
        stylesheet = weasyprint.CSS(
            filename=templates_dir / "report.css", url_fetcher=self._fetcher
        )
        self._stylesheets = {
            language: [stylesheet, self._page_css(language)] for language in SUPPORTED_LANGUAGES
        }

    def _page_css(self, language: str) -> weasyprint.CSS:
        content = page_counter_css(get_translations(language).gettext(PAGE_OF))
        rule = f"@page {{ @bottom-right {{ content: {content}; }} }}"
        return weasyprint.CSS(string=rule, url_fetcher=self._fetcher)

    def render_html(self, report: Report, photo_uri: str, heatmap_uri: str | None) -> str:
        """The report as HTML (what `render` lays out)."""
        template = self._templates[report.language]
        context = report_context(report, get_translations(report.language), self._text_limits)
        return template.render(photo_uri=photo_uri, heatmap_uri=heatmap_uri, **context)

    def render(
        self,
        report: Report,
        image: Image.Image,
        heatmap_png: bytes | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> bytes:
        """The report as PDF/A-3b bytes, with `attachments` embedded as associated files.

        The layout runs in its own daemon thread and is given `budget_s`: past it the caller
        gets `RenderTimeout` and the thread is abandoned (free text is clipped and made
        breakable first, see `service.report.text`, so an abandoned layout still ends soon).
        """
        done: Future[bytes] = Future()

        def work() -> None:
            try:
                done.set_result(self._render(report, image, heatmap_png, attachments))
            except BaseException as exc:  # handed to the waiting caller
                done.set_exception(exc)

        threading.Thread(target=work, name="pdf-layout", daemon=True).start()
        try:
            return done.result(timeout=self._budget_s)
        except TimeoutError:
            raise RenderTimeout(
                f"the PDF layout took longer than {self._budget_s:g} s and was abandoned",
                retry_after=30,
            ) from None

    def _render(
        self,
        report: Report,
        image: Image.Image,
        heatmap_png: bytes | None,
        attachments: Sequence[Attachment],
    ) -> bytes:
        if report.language not in self._templates:
            get_translations(report.language)  # raises UnsupportedLanguage
        heatmap_uri = None
        if heatmap_png is not None:
            with Image.open(io.BytesIO(heatmap_png)) as heatmap:
                heatmap_uri = jpeg_data_uri(heatmap, self._image_max_side)
        html = self.render_html(report, jpeg_data_uri(image, self._image_max_side), heatmap_uri)
        fetcher = LocalOnlyFetcher(self._templates_dir)  # an OpenerDirector: one per render
        document = weasyprint.HTML(string=html, base_url=self._base_url, url_fetcher=fetcher)
        embedded = [
            weasyprint.Attachment(
                url=_data_uri(item.content, item.mime),
                url_fetcher=fetcher,
                name=item.filename,
                description=item.description,
                relationship=item.relationship,
            )
            for item in attachments
        ]
        pdf: bytes = document.write_pdf(
            stylesheets=self._stylesheets[report.language],
            font_config=FontConfiguration(),
            attachments=embedded,
            pdf_variant=PDF_VARIANT,
        )
        return pdf
