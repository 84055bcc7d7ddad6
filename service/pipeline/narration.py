"""The narrate stage: stream the chosen narrator, check its text, fall back once.

A language model's text (`without_llm` False) streams to the client as it arrives; once it is
complete the output guard (`narrators.guard`) checks it. Any failure of the primary narrator —
unavailable, a deadline passed (`narrators.deadlines`), truncated, broken off, an unexpected
error, or a text the guard rejects — makes the knowledge narrator write the whole narrative:
a `narrator.fallback` event and the `narrator_fallback` notice say so. A text the guard repairs
is used with the `narrative_repaired` notice. Whenever text already sent is superseded, a
`report.reset` event comes first and the deltas after it are the whole narrative, so a
client that appends deltas ends with exactly the checked text that the report, PDF and FHIR
outputs carry.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.narrators import guard
from service.pipeline.narrators.base import NarrationRequest, Narrator, NarratorFailed

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


class NarrativeRejected(NarratorFailed):
    """The output guard rejected the text (drug names, doses, missing sections)."""


def _reset(reason: str) -> ev.Event:
    return ev.Event(ev.REPORT_RESET, ev.ReportResetData(reason=reason))


def _delta(text: str) -> ev.Event:
    return ev.Event(ev.REPORT_DELTA, ev.ReportDeltaData(text=text))


async def _stream(
    narrator: Narrator, request: NarrationRequest, out: Narration
) -> AsyncIterator[ev.Event]:
    """Deltas of `narrator`'s text, filling `out.parts`; the stream is closed whatever happens."""
    chunks = narrator.stream(request)
    try:
        async for chunk in chunks:
            if chunk:
                out.parts.append(chunk)
                yield _delta(chunk)
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def _checked(
    narrator: Narrator, request: NarrationRequest, out: Narration
) -> AsyncIterator[ev.Event]:
    """The primary narrator's deltas, then the guard: accept, repair (reset + the repaired
    text) or raise `NarrativeRejected`."""
    async for event in _stream(narrator, request, out):
        yield event
    if narrator.without_llm:
        return
    verdict = guard.check(out.text, request.language, request.referral)
    log.info(
        "narrative.checked",
        case_id=request.case_id,
        action=verdict.action,
        rules=list(verdict.rules),
    )
    if verdict.action == "reject":
        raise NarrativeRejected(f"output guard: {verdict.reason()}")
    if verdict.action == "repair":
        out.notices.append("narrative_repaired")  # a code: the PDF and page localize it
        yield _reset("narrative_repaired")
        out.parts = [p for p in re.split(r"(?<=\n\n)", verdict.text) if p]
        for part in out.parts:
            yield _delta(part)


async def narrate(
    primary: Narrator, fallback: Narrator, request: NarrationRequest, out: Narration
) -> AsyncIterator[ev.Event]:
    """Yield `report.delta` (and `narrator.fallback`, `report.reset`) events, filling `out`.

    The fallback narrator's own failure is not caught: the run then ends with an `error`.
    """
    out.narrator, out.parts = primary, []
    try:
        async for event in _checked(primary, request, out):
            yield event
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure of the primary: never a 500 while a fallback exists
        if primary is fallback:
            raise
        expected = isinstance(exc, NarratorFailed)
        (log.warning if expected else log.error)(
            "narrator_failed",
            case_id=request.case_id,
            narrator=primary.info.name,
            error=type(exc).__name__,
            streamed=bool(out.parts),
        )
        reason = str(exc) if expected else f"narrator error: {type(exc).__name__}"
        out.notices.append("narrator_fallback")  # a code: the PDF and page localize it
        yield ev.Event(
            ev.NARRATOR_FALLBACK,
            ev.NarratorFallbackData(
                {
                    "from": primary.info.name,
                    "to": fallback.info.name,
                    "reason": reason[:200],
                    "partial_discarded": bool(out.parts),
                }
            ),
        )
        if out.parts:
            yield _reset("narrator_fallback")
    out.narrator, out.parts = fallback, []
    async for event in _stream(fallback, request, out):
        yield event
