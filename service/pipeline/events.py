"""Typed pipeline events.

Names and payloads are a public contract: contracts/sse-events.schema.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

ACCEPTED: Final = "accepted"
VALIDATED: Final = "validated"
CLASSIFIED: Final = "classified"
ANALYSIS: Final = "analysis"
NARRATOR_FALLBACK: Final = "narrator.fallback"
REPORT_DELTA: Final = "report.delta"
REPORT_COMPLETED: Final = "report.completed"
PDF_READY: Final = "pdf.ready"
COMPLETED: Final = "completed"
ERROR: Final = "error"

#: Every event name, in the order a successful diagnose run emits them.
EVENT_NAMES: Final = (
    ACCEPTED,
    VALIDATED,
    CLASSIFIED,
    ANALYSIS,
    NARRATOR_FALLBACK,
    REPORT_DELTA,
    REPORT_COMPLETED,
    PDF_READY,
    COMPLETED,
    ERROR,
)
TERMINAL_EVENTS: Final = frozenset({COMPLETED, ERROR})


@dataclass(frozen=True)
class Event:
    """One step of a run: a name from EVENT_NAMES and a JSON-ready payload."""

    name: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """True for the last event of a run."""
        return self.name in TERMINAL_EVENTS
