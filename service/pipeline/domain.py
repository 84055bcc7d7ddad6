"""Domain types shared by every stage and door. No HTTP, no FHIR, no DICOM here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CLASSES: tuple[str, ...] = ("Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea")
LANGUAGES: tuple[str, ...] = ("ko", "en", "vi")

Status = Literal["ok", "inconclusive", "rejected"]


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a model, carried into every output (PDF footer, FHIR Device, DICOM)."""

    name: str
    version: str
    sha256: str
    kind: str = "classifier"

    def as_dict(self) -> dict[str, str]:
        """JSON form used by the REST contract."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Classification:
    """Probabilities over all classes from one classifier backend."""

    probabilities: dict[str, float]
    model: ModelInfo
    status: Status = "ok"
    reasons: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The most probable class."""
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def confidence(self) -> float:
        """Probability of the most probable class."""
        return self.probabilities[self.label]


@dataclass(frozen=True)
class Patient:
    """What the report needs to know of the patient. Never logged."""

    name: str | None = None
    age: int | None = None
    sex: Literal["female", "male", "other", "unknown"] | None = None
    birth_date: str | None = None
    identifier: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
