"""The knowledge narrator: curated per-class content in ko/en/vi, composed without a language model.

It is the default narrator and the fallback when an LLM backend is down. The text follows the
section contract of `sections.py` and starts with a line saying no language model wrote it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable

from service.pipeline.domain import ModelInfo, Patient
from service.pipeline.narrators.base import NarrationRequest
from service.pipeline.narrators.content import (
    CONTENT_VERSION,
    Catalog,
    KnowledgeEntry,
    age_band,
    catalog,
    content_sha256,
)
from service.pipeline.narrators.sections import render_sections
from service.pipeline.policy import CANCER, candidates, runner_ups

__all__ = [
    "CONTENT_VERSION",
    "KnowledgeEntry",
    "KnowledgeNarrator",
    "compose_narrative",
    "knowledge_entry",
    "percent",
    "reason_phrases",
]


def _language(language: str) -> str:
    return language.replace("_", "-").split("-")[0].lower()


def knowledge_entry(label: str, language: str) -> KnowledgeEntry:
    """The curated content for class `label` in `language` (raises ValueError when unknown)."""
    entries = catalog(_language(language)).entries
    if label not in entries:
        raise ValueError(f"unknown class {label!r}; expected one of {tuple(entries)}")
    return entries[label]


def percent(probability: float) -> str:
    """A calibrated probability as a whole percentage; never claims 0 % or 100 %."""
    if probability >= 0.995:
        return ">99%"
    if probability < 0.005:
        return "<1%"
    return f"{probability * 100:.0f}%"


def reason_phrases(codes: Iterable[str], language: str) -> list[str]:
    """Localized phrases for gate reason codes, deduplicated; unknown codes share one phrase."""
    reasons = catalog(_language(language)).reasons
    phrases = [reasons.get(code, reasons["unknown"]) for code in codes]
    return list(dict.fromkeys(phrases)) or [reasons["unknown"]]


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _listing(cat: Catalog, ranked: list[tuple[str, float]]) -> str:
    short = cat.text["candidate_short"]
    items = [
        short.format(name=cat.entries[lbl].short_name, confidence=percent(p)) for lbl, p in ranked
    ]
    return cat.text["separator"].join(items)


def _history(cat: Catalog, history: str | None) -> str:
    return cat.text["history_given" if history and history.strip() else "history_none"]


def _patient_notes(cat: Catalog, entry: KnowledgeEntry, patient: Patient) -> list[str]:
    notes = []
    age_note = entry.age_notes.get(age_band(patient.age) or "")
    if age_note:
        notes.append(cat.text["age_note"].format(note=age_note))
    sex_note = entry.sex_notes.get(patient.sex or "")
    if sex_note:
        notes.append(cat.text["sex_note"].format(note=sex_note))
    return notes


def _others(request: NarrationRequest) -> list[tuple[str, float]]:
    """Runner-ups to name: the close ones, plus a carcinoma that made the referral urgent."""
    others = runner_ups(request.classification)
    flagged = request.referral.runner_up
    if flagged and flagged not in {lbl for lbl, _ in others}:
        others.append((flagged, request.referral.runner_up_probability or 0.0))
    return others


def _cancer_flagged(request: NarrationRequest) -> bool:
    return request.referral.runner_up == CANCER


def _ok(cat: Catalog, request: NarrationRequest) -> dict[str, str]:
    c = request.classification
    entry, others, text = cat.entries[c.label], _others(request), cat.text
    finding = text["finding"].format(name=entry.name, confidence=percent(c.confidence))
    if others:
        finding += " " + text["runner_up"].format(candidates=_listing(cat, others))
    observations = [
        f"{finding} {text['scope']}",
        _history(cat, request.history),
        entry.description,
        f"{text['features']}\n{_bullets(entry.features)}",
        *_patient_notes(cat, entry, request.patient),
    ]
    differential = [f"{text['differential']}\n{_bullets(entry.differential)}"]
    if others:
        differential.append(text["model_alternatives"].format(candidates=_listing(cat, others)))
    recommendations = list(entry.recommendations)
    if _cancer_flagged(request):
        recommendations.insert(0, text["cancer_runner_up"])
    return {
        "observations": "\n\n".join(observations),
        "differential": "\n\n".join(differential),
        "red_flags": _bullets(entry.red_flags),
        "recommendations": _bullets(recommendations),
        "follow_up": entry.follow_up,
    }


def _inconclusive(cat: Catalog, request: NarrationRequest) -> dict[str, str]:
    ranked, text = candidates(request.classification), cat.text
    listing = text["inconclusive"].format(candidates=_listing(cat, ranked))
    lines = [
        text["candidate"].format(
            name=_cap(cat.entries[lbl].name),
            confidence=percent(p),
            summary=cat.entries[lbl].summary,
        )
        for lbl, p in ranked
    ]
    return {
        "observations": f"{listing} {text['scope']}\n\n{_history(cat, request.history)}",
        "differential": f"{text['candidates_intro']}\n{_bullets(lines)}",
        "red_flags": _bullets(cat.inconclusive["red_flags"]),
        "recommendations": _bullets(
            ([text["cancer_runner_up"]] if _cancer_flagged(request) else [])
            + list(cat.inconclusive["recommendations"])
        ),
        "follow_up": text["inconclusive_follow_up"],
    }


def _rejected(cat: Catalog, request: NarrationRequest) -> dict[str, str]:
    codes = request.gate.reasons
    reasons = cat.text["separator"].join(reason_phrases(codes, cat.language))
    return {
        "observations": cat.text["rejected"].format(reasons=reasons),
        "recommendations": f"{cat.text['retake_intro']}\n{_bullets(cat.retake)}\n\n"
        f"{cat.text['rejected_safety']}",
    }


def compose_narrative(request: NarrationRequest) -> str:
    """The full narrative for `request`: banner line, then the sections under their headings."""
    language = _language(request.language)
    cat = catalog(language)
    compose = {"ok": _ok, "inconclusive": _inconclusive, "rejected": _rejected}[request.gate.status]
    banner = cat.text["banner"].format(version=CONTENT_VERSION)
    return render_sections(compose(cat, request), language, preamble=banner)


class KnowledgeNarrator:
    """Narrator backed by the curated knowledge base; needs no model and never fails over."""

    without_llm = True

    def __init__(self) -> None:
        self.info = ModelInfo(
            name="skinscreen-knowledge-base",
            version=CONTENT_VERSION,
            sha256=content_sha256(),
            kind="narrator",
        )

    def ensure_capacity(self) -> None:
        """Always has capacity: composing text is instantaneous."""

    async def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        """Yield the narrative paragraph by paragraph, letting the event loop run in between."""
        for chunk in re.split(r"(?<=\n\n)", compose_narrative(request)):
            if chunk:
                yield chunk
                await asyncio.sleep(0)
