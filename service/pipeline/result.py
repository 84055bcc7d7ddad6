"""`RunResult`: a finished run's events folded, once, into one typed value.

Blocking doors (REST classify/analyze/diagnose, FHIR sync `$diagnose`, the CLI) await this
instead of reading events themselves; SSE doors stream the events as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from service.pipeline import events as ev


class NamedEvent(Protocol):
    """A live `Event` or a stored one: a name and its payload."""

    @property
    def name(self) -> str: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class RunResult:
    """What a run produced, as the doors need it."""

    case_id: str
    #: The problem body of the `error` event that ended the run, or None when it completed.
    error: dict[str, Any] | None = None
    validated: ev.ValidatedData | None = None
    classification: ev.ClassifiedData | None = None
    summary: str | None = None
    report: dict[str, Any] | None = None
    pdf: ev.PdfReadyData | None = None
    links: dict[str, str] = field(default_factory=dict)
    narrator_fallback: ev.NarratorFallbackData | None = None
    #: In-memory artifacts of a run that was not persisted (classify/analyze), by kind.
    artifacts: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """True when the run reached `completed`."""
        return self.error is None

    @classmethod
    def fold(
        cls,
        case_id: str,
        events: Iterable[NamedEvent],
        artifacts: Mapping[str, tuple[str, bytes]] | None = None,
    ) -> RunResult:
        """Fold a run's events (in order) into its result."""
        values: dict[str, Any] = {}
        error: dict[str, Any] | None = {
            "type": "https://skinscreen.dev/problems/pipeline-failed",
            "title": "The report could not be produced",
            "status": 500,
            "detail": "the run ended without a terminal event",
            "code": "pipeline-failed",
        }
        for event in events:
            data = dict(event.data)
            if event.name == ev.VALIDATED:
                values["validated"] = cast(ev.ValidatedData, data)
            elif event.name == ev.CLASSIFIED:
                values["classification"] = cast(ev.ClassifiedData, data)
            elif event.name == ev.ANALYSIS:
                values["summary"] = str(data["summary"])
            elif event.name == ev.NARRATOR_FALLBACK:
                values["narrator_fallback"] = cast(ev.NarratorFallbackData, data)
            elif event.name == ev.REPORT_COMPLETED:
                values["report"] = data["report"]
            elif event.name == ev.PDF_READY:
                values["pdf"] = cast(ev.PdfReadyData, data)
            elif event.name == ev.COMPLETED:
                values["links"] = dict(data.get("links") or {})
                error = None
            elif event.name == ev.ERROR:
                error = data
        return cls(case_id=case_id, error=error, artifacts=dict(artifacts or {}), **values)
