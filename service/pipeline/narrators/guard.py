"""The output guard on a language model's narrative (medgemma, openai): pure functions.

`check(text, language, referral)` finds what a screening report must never say and what it must
say, and decides what happens to the text:

- **reject** (the run falls back to the knowledge narrator): a drug name (ko/en/vi spellings
  in `guard_terms.json`), a dose (an amount with a unit, a concentration such as "0.05 %" or
  "1 % cream", or a frequency such as "twice a day" / "하루 2회" / "2 lần/ngày" in a sentence
  that also names a medicine), or a missing required section (`sections.py`).
- **repair**: an absolute reassurance ("harmless", "nothing to worry about", "무해",
  "không cần đi khám" …) is removed sentence by sentence and the standard disclaimer is put at
  the top; a missing urgent line when the referral is urgent is inserted as the first
  recommendation (content keys `summary_urgent_probability` / `summary_urgent`).
- **accept** otherwise.

Plain whole-number percentages are the classifier's probabilities, and "wash twice a day"
is skin-care advice from the knowledge base itself: neither is a dose on its own.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from service.pipeline.domain import REPORT_SECTIONS, Referral
from service.pipeline.narrators.content import catalog
from service.pipeline.narrators.sections import PREAMBLE, render_sections, split_sections
from service.pipeline.narrators.summary import triage_line
from service.pipeline.policy import PHOTO_NOT_ASSESSABLE

Rule = Literal["drug", "dose", "missing_section", "reassurance", "missing_urgent"]
Action = Literal["accept", "repair", "reject"]
#: Findings that make the text unusable; the others can be repaired.
REJECTING: frozenset[Rule] = frozenset({"drug", "dose", "missing_section"})
#: Sections a rejected photo's narrative needs (it has no findings to discuss).
REJECTED_PHOTO_SECTIONS = ("observations", "recommendations")


@dataclass(frozen=True)
class Finding:
    """One problem: its rule and a short, non-identifying detail (a term or a section key)."""

    rule: Rule
    detail: str


@dataclass(frozen=True)
class Verdict:
    """The findings, what to do, and the text to use (the input, or the repaired text)."""

    action: Action
    findings: tuple[Finding, ...]
    text: str

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules that fired, each once, in order."""
        return tuple(dict.fromkeys(f.rule for f in self.findings))

    def reason(self) -> str:
        """A one-line summary for events and logs (terms and section keys, no report text)."""
        return "; ".join(f"{f.rule}: {f.detail}" for f in self.findings)[:200]


@dataclass(frozen=True)
class _Terms:
    drugs: tuple[tuple[str, re.Pattern[str]], ...]
    medicine: dict[str, re.Pattern[str]]
    reassurance: dict[str, re.Pattern[str]]
    urgency: dict[str, re.Pattern[str]]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def _alternation(terms: list[str], *, word_start: bool) -> re.Pattern[str]:
    def one(term: str) -> str:
        latin = word_start and term[:1].isascii() and term[:1].isalnum()
        return (r"(?<![\w-])" if latin else "") + re.escape(_fold(term))

    return re.compile("|".join(one(t) for t in sorted(terms, key=len, reverse=True)))


@cache
def _terms() -> _Terms:
    raw = json.loads(
        resources.files(__package__).joinpath("guard_terms.json").read_text(encoding="utf-8")
    )
    drugs = tuple(
        (name, _alternation([name, *spellings], word_start=True))
        for name, spellings in raw["drugs"].items()
    )

    def per_language(key: str, *, word_start: bool) -> dict[str, re.Pattern[str]]:
        return {lang: _alternation(t, word_start=word_start) for lang, t in raw[key].items()}

    return _Terms(
        drugs=drugs,
        medicine=per_language("medicine_words", word_start=True),
        reassurance=per_language("reassurance", word_start=False),
        urgency=per_language("urgency", word_start=False),
    )


_NUM = r"(?<![\w.,])\d+(?:[.,]\d+)?"
_FORMS = (
    r"(?:cream|gel|ointment|lotion|solution|foam|wash|shampoo|크림|연고|젤|겔|로션|용액|"
    r"kem|thuốc mỡ|dung dịch)"
)
#: An amount with a unit, or a concentration: a dose whatever the sentence says.
_AMOUNT = re.compile(
    rf"{_NUM}\s*(?:mg|mcg|µg|μg|ug|g|ml|iu|units?|밀리그램|밀리리터|캡슐)"
    rf"(?![a-z])|{_NUM}\s*(?:viên|giọt)\b|(?<![\w.,])0[.,]\d+\s*%|{_NUM}\s*%\s*{_FORMS}"
)
_COUNT_EN = r"(?:\d+|one|two|three|four|once|twice|thrice)"
_COUNT_KO = r"(?:\d+|한|두|세|네)"
_COUNT_VI = r"(?:\d+|một|hai|ba|bốn)"
#: How often: a dose only next to a medicine word or a drug name.
_FREQUENCY = re.compile(
    rf"\b{_COUNT_EN}\s*(?:times?\s*)?(?:a|per|each|every)\s*day\b|\b{_COUNT_EN}\s*(?:times?\s*)?"
    r"daily\b|\bevery\s*\d+\s*(?:hours?|hrs?|h)\b|\b(?:b\.?i\.?d|t\.?i\.?d|q\.?i\.?d|q\.?d)\b|"
    rf"(?:하루|1일|매일)\s*{_COUNT_KO}\s*(?:회|번|차례)|\d+\s*시간\s*마다|"
    rf"{_COUNT_VI}\s*lần\s*(?:/|mỗi|một|trong|trên)\s*(?:một\s*)?ngày|ngày\s*{_COUNT_VI}\s*lần|"
    r"mỗi\s*\d+\s*giờ"
)
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")
_BULLET = re.compile(r"^(\s*(?:[-*•+]|\d{1,2}[.)])\s+)")


def _sentences(text: str) -> list[str]:
    return [s for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def required_sections(referral: Referral) -> tuple[str, ...]:
    """Every section, or observations and recommendations for a rejected photo."""
    return REJECTED_PHOTO_SECTIONS if PHOTO_NOT_ASSESSABLE in referral.reasons else REPORT_SECTIONS


def _language(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


def find(text: str, language: str, referral: Referral) -> tuple[Finding, ...]:
    """Every finding in `text` (see the module docstring), drug names first."""
    lang, terms, folded = _language(language), _terms(), _fold(text)
    findings = [Finding("drug", name) for name, pattern in terms.drugs if pattern.search(folded)]
    medicine = terms.medicine[lang]
    for sentence in _sentences(folded):
        hit = _AMOUNT.search(sentence)
        if hit is None and (frequency := _FREQUENCY.search(sentence)):
            named = medicine.search(sentence) or any(p.search(sentence) for _, p in terms.drugs)
            hit = frequency if named else None
        if hit:
            findings.append(Finding("dose", hit.group(0)))
    sections = split_sections(text, lang)
    findings += [
        Finding("missing_section", k) for k in required_sections(referral) if k not in sections
    ]
    findings += [
        Finding("reassurance", m.group(0)) for m in terms.reassurance[lang].finditer(folded)
    ]
    if referral.level == "urgent" and not _urgent(sections.get("recommendations", ""), lang):
        findings.append(Finding("missing_urgent", "recommendations"))
    return tuple(findings)


def _urgent(recommendations: str, lang: str) -> bool:
    return bool(_terms().urgency[lang].search(_fold(recommendations)))


def urgent_line(language: str, referral: Referral) -> str:
    """The template's urgent line; it names the runner-up when that triggered the referral."""
    cat = catalog(_language(language))
    return triage_line(cat, referral) if referral.level == "urgent" else cat.text["summary_urgent"]


def disclaimer(language: str) -> str:
    """The template's disclaimer (`summary_disclaimer`, in every catalog)."""
    return catalog(_language(language)).text["summary_disclaimer"]


def _without_reassurance(body: str, pattern: re.Pattern[str]) -> str:
    kept_lines = []
    for line in body.splitlines():
        bullet = _BULLET.match(line)
        prefix = bullet.group(1) if bullet else ""
        parts = _SENTENCE_END.split(line[len(prefix) :])
        kept = [p for p in parts if not pattern.search(_fold(p))]
        if len(kept) == len(parts):
            kept_lines.append(line)
        elif any(p.strip() for p in kept):
            kept_lines.append(prefix + " ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip()


def repair(text: str, language: str, referral: Referral, findings: tuple[Finding, ...]) -> str:
    """`text` without reassurance sentences (and with the disclaimer), with the urgent line."""
    lang, rules = _language(language), {f.rule for f in findings}
    sections = split_sections(text, lang)
    preamble = sections.pop(PREAMBLE, "")
    if "reassurance" in rules:
        pattern = _terms().reassurance[lang]
        sections = {k: _without_reassurance(v, pattern) for k, v in sections.items()}
        preamble = _without_reassurance(preamble, pattern)
        preamble = f"{disclaimer(lang)}\n\n{preamble}".strip()
    if "missing_urgent" in rules:
        body = sections.get("recommendations", "")
        sections["recommendations"] = f"- {urgent_line(lang, referral)}\n{body}".strip()
    return render_sections(sections, lang, preamble=preamble)


def check(text: str, language: str, referral: Referral) -> Verdict:
    """Find, then decide: reject, repair (and re-check the repair) or accept."""
    findings = find(text, language, referral)
    if not findings:
        return Verdict("accept", (), text)
    if any(f.rule in REJECTING for f in findings):
        return Verdict("reject", findings, text)
    repaired = repair(text, language, referral, findings)
    left = find(repaired, language, referral)
    if left:  # a repair that does not hold is a rejection (never unchecked text)
        return Verdict("reject", findings + left, text)
    return Verdict("repair", findings, repaired)
