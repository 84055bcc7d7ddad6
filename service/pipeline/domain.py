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
    """Probabilities over all classes from one classifier backend.

    It carries no status of its own: the one verdict (`ok` / `inconclusive` / `rejected` and
    its reasons) is the `GateOutcome`, decided once by `pipeline.policy.verdict`.
    """

    probabilities: dict[str, float]
    model: ModelInfo

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


@dataclass(frozen=True)
class GateOutcome:
    """The one verdict on one image: quality, out-of-distribution and confidence together.

    `reasons` are stable machine codes (e.g. `too_dark`, `blurred`, `not_skin`,
    `low_confidence`); `measurements` are the numbers behind them (for logs and tuning).
    Every output (summary, narrative, PDF, FHIR, JSON) reads status and reasons from here.
    """

    status: Status
    reasons: tuple[str, ...] = ()
    measurements: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceImage:
    """Where the image came from, carried into the PDF, FHIR and DICOM outputs."""

    media_type: str
    sha256: str
    width: int
    height: int
    #: DICOM identifiers when the image arrived as DICOM (study/series/SOP instance UIDs, …).
    dicom: dict[str, str] = field(default_factory=dict)
    #: FHIR reference of the source resource when it arrived as FHIR (e.g. "Media/123").
    fhir_reference: str | None = None


REPORT_SECTIONS: tuple[str, ...] = (
    "observations",
    "differential",
    "red_flags",
    "recommendations",
    "follow_up",
)


@dataclass(frozen=True)
class Report:
    """The full structured report a run produces (rendered to PDF, FHIR, DICOM, JSON)."""

    case_id: str
    language: str
    patient: Patient
    history: str | None
    source: SourceImage
    classification: Classification
    gate: GateOutcome
    summary: str
    sections: dict[str, str]
    narrative: str
    narrator: ModelInfo
    generated_without_llm: bool
    urgent_referral: bool
    created_at: str
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF/A-3 (e.g. the FHIR DiagnosticReport JSON)."""

    filename: str
    content: bytes
    mime: str
    description: str
    #: PDF/A-3 AFRelationship: Data, Source, Alternative, Supplement or Unspecified.
    relationship: str = "Data"
