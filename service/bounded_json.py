"""JSON from strangers, with limits checked before `json.loads` sees a byte.

`json.loads` recurses once per nested array/object (10,000 `[` raise `RecursionError`) and turns
a 5,000-digit integer into `ValueError` ("Exceeds the limit (4300 digits)"); neither is a
`JSONDecodeError`, so a door that only catches that answers 500. `loads` first runs a small
scanner over the text — strings are skipped whole (`bytes.find` for plain runs, so a 20 MB
body that is mostly a base64 image costs a few milliseconds) — and refuses a body that nests deeper
than `max_depth` or holds a number token longer than `max_number_chars`. Only then is the text
parsed; `NaN`/`Infinity` (not JSON) and lone surrogates (`"\\ud800"`) are refused too.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 64

# Outside strings: a quote, an opening or closing bracket, or a number-like run. Whitespace,
# `,`, `:` and literals between them are skipped by the search.
_OUTSIDE = re.compile(rb'["\[\]{}]|[-+0-9.eE]+')
# The rest of a string after its opening quote, exactly as json's scanner ends one.
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENING = frozenset(b"[{")
_CLOSING = frozenset(b"]}")
_QUOTE = 0x22
# `\uD800`–`\uDFFF`: json.loads joins valid pairs; a lone one would survive as a str that no
# UTF-8 encoder (the store, the PDF, the FHIR output) accepts.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class JsonRejected(ValueError):
    """The text is not JSON this service will parse; `reason` says why (no content quoted)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_bounds(
    data: bytes, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS
) -> None:
    """Raise `JsonRejected` when `data` nests deeper than `max_depth` or has a longer number.

    The scan over-approximates what `json.loads` would meet: a bracket inside a string never
    counts, and anything the scanner cannot read as a token is left for the parser to refuse.
    """
    depth, pos = 0, 0
    while (match := _OUTSIDE.search(data, pos)) is not None:
        first, pos = data[match.start()], match.end()
        if first == _QUOTE:
            pos = _string_end(data, pos)
        elif first in _OPENING:
            depth += 1
            if depth > max_depth:
                raise JsonRejected(f"nested deeper than {max_depth} levels")
        elif first in _CLOSING:
            depth = max(0, depth - 1)
        elif pos - match.start() > max_number_chars:
            raise JsonRejected(f"a number is longer than {max_number_chars} characters")


def _string_end(data: bytes, start: int) -> int:
    """Where the string whose body starts at `start` ends (after its closing quote); the end of
    `data` when it is unterminated. Plain runs (a base64 image) are found with `bytes.find`."""
    quote = data.find(b'"', start)
    if quote < 0:
        return len(data)
    if data.find(b"\\", start, quote) < 0:
        return quote + 1
    rest = _STRING_REST.match(data, start)
    return len(data) if rest is None else rest.end()


def _no_constants(name: str) -> Any:
    raise JsonRejected(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected("a number is out of range")
    return value


def loads(
    data: bytes | str, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS
) -> Any:
    """Parse JSON text within the limits; `JsonRejected` (a `ValueError`) for anything else."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    check_bounds(raw, max_depth=max_depth, max_number_chars=max_number_chars)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonRejected("the text is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except JsonRejected:
        raise
    except json.JSONDecodeError as exc:
        raise JsonRejected(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError):  # belt and braces: the scan should have caught these
        raise JsonRejected("not JSON within this service's limits") from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise JsonRejected("a string holds a lone surrogate (not Unicode text)")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string (key or value) anywhere in `value` cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
