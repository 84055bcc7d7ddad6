"""The narrative's section contract: localized level-2 headings for REPORT_SECTIONS, in order.

Narrators write `## <title>` headings; `split_sections` maps a narrative back to section keys
and tolerates what language models do with headings (other `#` levels, bold lines, numbering,
trailing colons, English titles in a Korean or Vietnamese text). No text is ever dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from service.pipeline.domain import LANGUAGES, REPORT_SECTIONS

PREAMBLE = "preamble"

SECTION_TITLES: dict[str, dict[str, str]] = {
    "en": {
        "observations": "Observations",
        "differential": "Differential diagnosis",
        "red_flags": "Red flags",
        "recommendations": "Recommended next steps",
        "follow_up": "Follow-up",
    },
    "ko": {
        "observations": "관찰 소견",
        "differential": "감별 진단",
        "red_flags": "경고 징후",
        "recommendations": "권장 조치",
        "follow_up": "추적 관찰",
    },
    "vi": {
        "observations": "Nhận xét",
        "differential": "Chẩn đoán phân biệt",
        "red_flags": "Dấu hiệu cảnh báo",
        "recommendations": "Các bước tiếp theo được khuyến nghị",
        "follow_up": "Theo dõi",
    },
}

#: Extra titles language models use for the same sections (matched after normalization).
_ALIASES: dict[str, tuple[str, ...]] = {
    "observations": (
        "Observation",
        "Findings",
        "Clinical findings",
        "Assessment",
        "Impression",
        "소견",
        "관찰",
        "임상 소견",
        "Quan sát",
        "Nhận định",
        "Kết quả quan sát",
    ),
    "differential": (
        "Differential",
        "Differentials",
        "Differential diagnoses",
        "Differential diagnosis list",
        "감별진단",
        "감별 질환",
        "Chẩn đoán khác",
    ),
    "red_flags": (
        "Red flag",
        "Warning signs",
        "Warning signs to watch for",
        "Alarm signs",
        "위험 신호",
        "주의 징후",
        "경고 신호",
        "Dấu hiệu nguy hiểm",
        "Các dấu hiệu cảnh báo",
        "Dấu hiệu báo động",
    ),
    "recommendations": (
        "Recommendations",
        "Recommendation",
        "Next steps",
        "Recommended actions",
        "Management",
        "Plan",
        "권장 사항",
        "권고 사항",
        "다음 단계",
        "권장되는 다음 단계",
        "Khuyến nghị",
        "Các bước tiếp theo",
        "Bước tiếp theo",
        "Xử trí",
    ),
    "follow_up": (
        "Follow up",
        "Followup",
        "Follow-up plan",
        "Monitoring",
        "경과 관찰",
        "추적 관찰 계획",
        "Theo dõi tiếp",
        "Tái khám",
    ),
}

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*(?P<title>.*?)\s*#*\s*$")
_BOLD_LINE = re.compile(r"^\s*(?:\*\*|__)(?P<title>[^*_]+?)(?:\*\*|__)\s*(?P<rest>.*)$")
_PARENTHETICAL = re.compile(r"\s*[(（][^)）]*[)）]\s*$")
_NUMBERING = re.compile(r"^(?:\(?\d{1,2}[.):]|\(?[ivxIVX]{1,4}[.)]|[A-Ea-e][.)]|[-*•])\s*")


def _normalize(title: str) -> str:
    """Casefolded letters only: "**2. Red flags:**" and "red-flags" both give "redflags"."""
    text = unicodedata.normalize("NFC", title).strip().strip("*_").strip()
    text = _NUMBERING.sub("", text)
    text = _PARENTHETICAL.sub("", text)
    return re.sub(r"[\W_]+", "", text.casefold())


def _lookup(*, aliases: bool) -> dict[str, str]:
    lookup = {
        _normalize(title): key
        for titles in SECTION_TITLES.values()
        for key, title in titles.items()
    }
    if aliases:
        for key, names in _ALIASES.items():
            for name in names:
                lookup.setdefault(_normalize(name), key)
    return lookup


#: Marked-up headings (`#`, bold) may use aliases; a bare line must be an exact title.
_MARKED = _lookup(aliases=True)
_BARE = _lookup(aliases=False)


def _language(language: str) -> str:
    code = language.replace("_", "-").split("-")[0].lower()
    if code not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    return code


def heading(key: str, language: str) -> str:
    """The Markdown level-2 heading line for section `key` (e.g. "## Red flags")."""
    return f"## {SECTION_TITLES[_language(language)][key]}"


def section_key(title: str) -> str | None:
    """The section key a heading title means (any language, common aliases), or None."""
    return _MARKED.get(_normalize(title))


def _classify_line(line: str) -> tuple[str | None, str]:
    """(section key, text after the heading on the same line) or (None, "") for body text."""
    match = _MD_HEADING.match(line)
    if match:
        return section_key(match["title"]), ""
    match = _BOLD_LINE.match(line)
    if match:
        key = section_key(match["title"])
        return key, match["rest"].lstrip(":：").strip() if key else ""
    if len(line) <= 60 and not line.lstrip().startswith(("-", "*", "•", "+")):
        return _BARE.get(_normalize(line)), ""
    return None, ""


def split_sections(text: str, language: str) -> dict[str, str]:
    """Map a narrative onto section keys (plus "preamble" for text before the first heading).

    Only sections present in the text appear, each body stripped; a repeated section is
    appended to the first. Unknown headings stay as text in the current section.
    """
    _language(language)
    buckets: dict[str, list[str]] = {}
    current = PREAMBLE
    for line in text.splitlines():
        key, rest = _classify_line(line)
        if key:
            current = key
            lines = buckets.setdefault(current, [])
            if lines:
                lines.append("")
            if rest:
                lines.append(rest)
            continue
        buckets.setdefault(current, []).append(line)
    result = {k: "\n".join(v).strip() for k, v in buckets.items()}
    order = (PREAMBLE, *REPORT_SECTIONS)
    return {k: result[k] for k in order if result.get(k)}


def render_sections(sections: Mapping[str, str], language: str, preamble: str = "") -> str:
    """The inverse of `split_sections`: preamble, then each non-empty section under its heading."""
    parts = [preamble.strip()] if preamble.strip() else []
    for key in REPORT_SECTIONS:
        body = sections.get(key, "").strip()
        if body:
            parts.append(f"{heading(key, language)}\n\n{body}")
    return "\n\n".join(parts) + "\n" if parts else ""
