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
    #: Split-conformal prediction set (most probable first): the classes that cannot be ruled
    #: out at the fitted coverage (`pipeline.conformal`); empty when the model has none fitted.
    prediction_set: tuple[str, ...] = ()

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


ReferralLevel = Literal["urgent", "soon", "routine"]


@dataclass(frozen=True)
class Referral:
    """The triage decision: how soon a clinician should see the patient, and why.

    `runner_up` names the class that made it urgent when that class is not the top finding
    (e.g. Carcinoma at 12 % under Milia at 80 %), with its probability.
    """

    level: ReferralLevel
    reasons: tuple[str, ...]
    runner_up: str | None = None
    runner_up_probability: float | None = None
    #: The malignancy threshold the decision used (P(Carcinoma) at or above → urgent).
    threshold: float | None = None

    def as_json(self) -> dict[str, object]:
        """`{"level", "reasons", ...}` for the JSON contract and the events."""
        body: dict[str, object] = {"level": self.level, "reasons": list(self.reasons)}
        if self.runner_up is not None:
            body["runner_up"] = {
                "label": self.runner_up,
                "probability": round(float(self.runner_up_probability or 0.0), 4),
            }
        if self.threshold is not None:
            body["malignancy_threshold"] = self.threshold
        return body


ReviewDecision = Literal["confirm", "revise", "not_assessable"]
REVIEW_DECISIONS: tuple[ReviewDecision, ...] = ("confirm", "revise", "not_assessable")


@dataclass(frozen=True)
class Review:
    """A clinician's sign-off of a report; it makes report version `version`.

    `finding` is the class the clinician stands behind: the AI finding for `confirm`, the
    clinician's class for `revise`, None for `not_assessable`.
    """

    reviewer: str
    decision: ReviewDecision
    finding: str | None
    reviewed_at: str
    version: int
    reviewer_id: str | None = None
    comment: str | None = None
    #: The client (API credentials) that recorded the review (audit; never shown).
    client: str | None = None


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
    referral: Referral
    created_at: str
    notices: tuple[str, ...] = ()
    #: The latest clinician review; None while the report is an unreviewed AI result.
    review: Review | None = None
    #: Earlier reviews, oldest first (a reviewed report can be reviewed again: an amendment).
    earlier_reviews: tuple[Review, ...] = ()

    @property
    def version(self) -> int:
        """Report version: 1 as produced, +1 per review."""
        return self.review.version if self.review else 1


@dataclass(frozen=True)
class Attachment:
    """A file embedded in the PDF/A-3 (e.g. the FHIR DiagnosticReport JSON)."""

    filename: str
    content: bytes
    mime: str
    description: str
    #: PDF/A-3 AFRelationship: Data, Source, Alternative, Supplement or Unspecified.
    relationship: str = "Data"
