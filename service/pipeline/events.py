"""Typed pipeline events.

Names and payloads are a public contract: contracts/sse-events.schema.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NotRequired, TypedDict

ACCEPTED: Final = "accepted"
#: A worker died while running the case; another re-runs it from the start.
RETRYING: Final = "retrying"
VALIDATED: Final = "validated"
CLASSIFIED: Final = "classified"
ANALYSIS: Final = "analysis"
NARRATOR_FALLBACK: Final = "narrator.fallback"
REPORT_DELTA: Final = "report.delta"
#: The `report.delta` text so far is superseded (fallback, or the output guard's repair).
REPORT_RESET: Final = "report.reset"
REPORT_COMPLETED: Final = "report.completed"
PDF_READY: Final = "pdf.ready"
COMPLETED: Final = "completed"
ERROR: Final = "error"
#: After `completed`: a clinician signed the report (a new version of it).
REPORT_REVIEWED: Final = "report.reviewed"

#: Every event name, in the order a successful diagnose run emits them.
EVENT_NAMES: Final = (
    RETRYING,
    ACCEPTED,
    VALIDATED,
    CLASSIFIED,
    ANALYSIS,
    NARRATOR_FALLBACK,
    REPORT_DELTA,
    REPORT_RESET,
    REPORT_COMPLETED,
    PDF_READY,
    COMPLETED,
    ERROR,
    REPORT_REVIEWED,
)
TERMINAL_EVENTS: Final = frozenset({COMPLETED, ERROR})


class AcceptedData(TypedDict):
    case_id: str
    mode: str
    received_bytes: int


class RetryingData(TypedDict):
    attempt: int
    max_attempts: int


class ValidatedData(TypedDict):
    width: int
    height: int
    media_type: str
    gate: dict[str, Any]


class ClassifiedData(TypedDict):
    status: str
    reasons: list[str]
    label: str | None
    confidence: float | None
    probabilities: NotRequired[dict[str, float]]
    prediction_set: NotRequired[list[str]]
    model: dict[str, str]
    referral: dict[str, object]


class AnalysisData(TypedDict):
    summary: str
    language: str


NarratorFallbackData = TypedDict(
    "NarratorFallbackData", {"from": str, "to": str, "reason": str, "partial_discarded": bool}
)


class ReportDeltaData(TypedDict):
    text: str


class ReportResetData(TypedDict):
    reason: str


class ReportCompletedData(TypedDict):
    report: dict[str, Any]


class PdfReadyData(TypedDict):
    id: str
    size: int
    sha256: str
    url: str


class CompletedData(TypedDict):
    case_id: str
    links: dict[str, str]
    elapsed_ms: NotRequired[float]


#: An `error` payload is an RFC 9457 problem body (+ `stage`).
ErrorData = dict[str, Any]

EventData = (
    RetryingData
    | AcceptedData
    | ValidatedData
    | ClassifiedData
    | AnalysisData
    | NarratorFallbackData
    | ReportDeltaData
    | ReportResetData
    | ReportCompletedData
    | PdfReadyData
    | CompletedData
    | ErrorData
)


@dataclass(frozen=True)
class Event:
    """One step of a run: a name from EVENT_NAMES and its typed, JSON-ready payload."""

    name: str
    data: EventData

    @property
    def terminal(self) -> bool:
        """True for the last event of a run."""
        return self.name in TERMINAL_EVENTS
