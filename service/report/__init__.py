"""Report rendering: the PDF (WeasyPrint) and the ko/en/vi catalogs shared with web pages."""

from service.report.i18n import SUPPORTED_LANGUAGES, get_translations, negotiate_language
from service.report.pdf import PdfRenderer

__all__ = [
    "SUPPORTED_LANGUAGES",
    "PdfRenderer",
    "get_translations",
    "negotiate_language",
]
