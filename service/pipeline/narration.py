"""The narrate stage: stream the chosen narrator, fall back to the knowledge narrator once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.narrators.base import NarrationRequest, Narrator, NarratorUnavailable

log = get_logger(__name__)


@dataclass
class Narration:
    """What the stage produced: the text, the narrator that wrote it and notice codes."""

    narrator: Narrator
    parts: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)


async def narrate(
    primary: Narrator, fallback: Narrator, request: NarrationRequest, out: Narration
) -> AsyncIterator[ev.Event]:
    """Yield `report.delta` (and `narrator.fallback`) events, filling `out` as text arrives.

    When the primary narrator is unavailable the partial text is discarded and the fallback
    writes the whole narrative; the notice code lets the PDF and the page say so.
    """
    out.narrator = primary
    for next_narrator in (fallback, None):
        out.parts = []
        try:
            async for chunk in out.narrator.stream(request):
                out.parts.append(chunk)
                yield ev.Event(ev.REPORT_DELTA, ev.ReportDeltaData(text=chunk))
            return
        except NarratorUnavailable as exc:
            if next_narrator is None:
                raise
            log.warning(
                "narrator_unavailable", case_id=request.case_id, narrator=out.narrator.info.name
            )
            out.notices.append("narrator_fallback")  # a code: the PDF and page localize it
            yield ev.Event(
                ev.NARRATOR_FALLBACK,
                ev.NarratorFallbackData(
                    {
                        "from": out.narrator.info.name,
                        "to": next_narrator.info.name,
                        "reason": str(exc)[:200],
                        "partial_discarded": bool(out.parts),
                    }
                ),
            )
            out.narrator = next_narrator
