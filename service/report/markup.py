"""A tiny, safe Markdown subset for narrator text: paragraphs, bullet and numbered lists,
`#` headings (rendered as bold lines) and `**bold**`. Everything else is escaped."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_BULLET = re.compile(r"^\s*[-*•]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(.*)$")
_HEADING = re.compile(r"^\s*#{1,6}\s+(.*)$")
#: `**bold**`; a zero-width space (service.report.text) may sit between the asterisks.
_BOLD = re.compile("\\*\u200b?\\*(.+?)\\*\u200b?\\*")


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", str(escape(text.strip())))


def render_markdownish(text: str) -> Markup:
    """Convert narrator text to safe HTML."""
    html: list[str] = []
    paragraph: list[str] = []
    list_tag: str | None = None

    def flush_paragraph() -> None:
        if paragraph:
            html.append(f"<p>{' '.join(paragraph)}</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            html.append(f"</{list_tag}>")
            list_tag = None

    for line in text.splitlines():
        item = _BULLET.match(line) or _NUMBERED.match(line)
        if item:
            flush_paragraph()
            tag = "ul" if _BULLET.match(line) else "ol"
            if list_tag != tag:
                close_list()
                html.append(f"<{tag}>")
                list_tag = tag
            html.append(f"<li>{_inline(item.group(1))}</li>")
        elif heading := _HEADING.match(line):
            flush_paragraph()
            close_list()
            html.append(f'<p class="subhead"><strong>{_inline(heading.group(1))}</strong></p>')
        elif line.strip():
            close_list()
            paragraph.append(_inline(line))
        else:
            flush_paragraph()
            close_list()
    flush_paragraph()
    close_list()
    return Markup("".join(html))
