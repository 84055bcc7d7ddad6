"""Shape free text before WeasyPrint lays it out: bounded length, breakable runs.

WeasyPrint re-lays the whole remaining text for every line of a word it cannot break, so one
unbroken 10 000-character name took seconds and a megabyte hours (quadratic), whatever the CSS
says. Every user- or model-written field is therefore clipped to a length the layout handles in
well under a second, with a visible count of what was left out, and long runs without a break
opportunity get zero-width spaces (never inside a grapheme: not before or after a combining
mark, so Thai vowels, Devanagari conjuncts and accents stay intact).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

ZERO_WIDTH_SPACE = "\u200b"
#: A run this long without whitespace gets a break opportunity every this many characters
#: (narrower than the narrowest PDF cell, so a line never waits for a break).
BREAK_EVERY = 24
_RUN = re.compile(r"\S{" + str(BREAK_EVERY + 1) + ",}")
#: Joiners and selectors glue their neighbours; never break next to them.
_GLUE = frozenset("\u200c\u200d\u2060\ufeff") | {chr(c) for c in range(0xFE00, 0xFE10)}


@dataclass(frozen=True)
class TextLimits:
    """The longest text each kind of PDF field shows (characters)."""

    name: int = 300
    history: int = 5000
    section: int = 8000
    value: int = 200  # identifiers and other short values read from a DICOM header


@dataclass(frozen=True)
class Clipped:
    """Text shortened to a limit and the number of characters left out."""

    text: str
    omitted: int


def clip(text: str, limit: int) -> Clipped:
    """At most `limit` characters of `text`, cut before a combining mark, never inside one."""
    if len(text) <= limit:
        return Clipped(text, 0)
    end = limit
    while end > 0 and _sticks_to_previous(text[end]):
        end -= 1
    return Clipped(text[:end].rstrip() + "…", len(text) - end)


def breakable(text: str) -> str:
    """`text` with a zero-width space every `BREAK_EVERY` characters of each long run."""
    return _RUN.sub(lambda match: _break_run(match.group(0)), text)


def _break_run(run: str) -> str:
    pieces: list[str] = []
    since = 0
    for index, char in enumerate(run):
        if (
            since >= BREAK_EVERY
            and not _sticks_to_previous(char)
            and not _sticks_to_previous(run[index - 1])
            and run[index - 1] not in _GLUE
        ):
            pieces.append(ZERO_WIDTH_SPACE)
            since = 0
        pieces.append(char)
        since += 1
    return "".join(pieces)


def _sticks_to_previous(char: str) -> bool:
    return unicodedata.category(char).startswith("M") or char in _GLUE


def shape(text: str, limit: int) -> Clipped:
    """Clip then make breakable: what every free-text field goes through before layout."""
    clipped = clip(text, limit)
    return Clipped(breakable(clipped.text), clipped.omitted)
