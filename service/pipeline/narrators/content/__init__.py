"""Curated clinical content per class and language, read from `<language>.json` beside this file.

Each file holds the same structure: `classes` (one entry per label in CLASSES), `general`
(red flags and recommendations for inconclusive results, photo-retake tips for rejected
ones), `reasons` (gate reason code → phrase) and
`text` (sentence templates with `{placeholders}`). Loading validates that nothing is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from service.pipeline.domain import CLASSES, LANGUAGES

#: Bump whenever any content file changes (it travels as the narrator's ModelInfo.version).
CONTENT_VERSION = "1.1.0"

AGE_BANDS: tuple[str, ...] = ("infant", "child", "adolescent", "adult", "older")
_LIST_FIELDS = ("features", "differential", "red_flags", "recommendations")
_TEXT_FIELDS = ("name", "short_name", "summary", "description", "follow_up")


@dataclass(frozen=True)
class KnowledgeEntry:
    """What the knowledge base says about one class in one language."""

    label: str
    language: str
    #: Full localized name (e.g. the carcinoma entry names both BCC and SCC).
    name: str
    #: Short name for inline lists ("keratinocyte skin cancer (20%)").
    short_name: str
    summary: str
    description: str
    features: tuple[str, ...]
    differential: tuple[str, ...]
    red_flags: tuple[str, ...]
    recommendations: tuple[str, ...]
    follow_up: str
    #: Notes by age band (see `age_band`); only bands with something specific to say.
    age_notes: Mapping[str, str]
    #: Notes by patient sex ("female", "male"); only where it matters.
    sex_notes: Mapping[str, str]


@dataclass(frozen=True)
class Catalog:
    """All content of one language."""

    language: str
    entries: Mapping[str, KnowledgeEntry]
    text: Mapping[str, str]
    reasons: Mapping[str, str]
    inconclusive: Mapping[str, tuple[str, ...]]
    retake: tuple[str, ...]


def age_band(age: int | None) -> str | None:
    """infant (<1 y), child (1-11), adolescent (12-17), adult (18-64), older (65+), or None."""
    if age is None or age < 0:
        return None
    bounds = ((1, "infant"), (12, "child"), (18, "adolescent"), (65, "adult"))
    return next((band for limit, band in bounds if age < limit), "older")


def _entry(label: str, language: str, raw: Mapping[str, Any]) -> KnowledgeEntry:
    for name in (*_TEXT_FIELDS, *_LIST_FIELDS):
        value = raw.get(name)
        if not value or (isinstance(value, list) and not all(value)):
            raise ValueError(f"content {language}/{label}: field {name!r} is empty")
    notes = {**raw.get("age_notes", {}), **raw.get("sex_notes", {})}
    unknown = set(raw.get("age_notes", {})) - set(AGE_BANDS)
    if unknown or not all(notes.values()):
        raise ValueError(f"content {language}/{label}: bad notes {sorted(unknown)}")
    return KnowledgeEntry(
        label=label,
        language=language,
        name=raw["name"],
        short_name=raw["short_name"],
        summary=raw["summary"],
        description=raw["description"],
        features=tuple(raw["features"]),
        differential=tuple(raw["differential"]),
        red_flags=tuple(raw["red_flags"]),
        recommendations=tuple(raw["recommendations"]),
        follow_up=raw["follow_up"],
        age_notes=dict(raw.get("age_notes", {})),
        sex_notes=dict(raw.get("sex_notes", {})),
    )


def _read(language: str) -> bytes:
    return (resources.files(__name__) / f"{language}.json").read_bytes()


@cache
def catalog(language: str) -> Catalog:
    """The validated content of `language` (one of LANGUAGES)."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    raw = json.loads(_read(language))
    missing = set(CLASSES) - set(raw["classes"])
    if missing:
        raise ValueError(f"content {language}: classes missing {sorted(missing)}")
    general = raw["general"]
    return Catalog(
        language=language,
        entries={label: _entry(label, language, raw["classes"][label]) for label in CLASSES},
        text=dict(raw["text"]),
        reasons=dict(raw["reasons"]),
        inconclusive={k: tuple(v) for k, v in general["inconclusive"].items()},
        retake=tuple(general["retake"]),
    )


@cache
def content_sha256() -> str:
    """SHA-256 over the content files, concatenated in LANGUAGES order."""
    digest = hashlib.sha256()
    for language in LANGUAGES:
        digest.update(_read(language))
    return digest.hexdigest()
