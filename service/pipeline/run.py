"""The one pipeline run: an async generator of events that every door consumes.

    intake (door) → screen (gate + classify) → summary → narrate (stream) → PDF → package

SSE streams these events, blocking REST and FHIR drain them, jobs persist them. The run knows
nothing of HTTP, FHIR or DICOM: outputs beyond the PDF come from injected `OutputPackager`s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.case import ArtifactSink, CaseInput, Mode
from service.pipeline.domain import Classification, GateOutcome, Report
from service.pipeline.links import case_links
from service.pipeline.narrators.base import NarrationRequest, Narrator, NarratorUnavailable
from service.pipeline.narrators.knowledge import prompt_review_advised
from service.pipeline.report_json import classification_json, gate_json, report_json

log = get_logger(__name__)


class Screening(Protocol):
    """Quality gate + classification in one call."""

    def screen(self, image: Image.Image) -> tuple[GateOutcome, Classification]:
        """Gate outcome and classification of one RGB image."""
        ...


class Renderer(Protocol):
    """Turns a report into a PDF."""

    def render(
        self,
        report: Report,
        image: Image.Image,
        heatmap_png: bytes | None = None,
        attachments: Sequence[Any] = (),
    ) -> bytes:
        """PDF bytes."""
        ...


class OutputPackager(Protocol):
    """Extra outputs of a finished report (FHIR resources, DICOM Encapsulated PDF)."""

    def attachments(self, report: Report, case: CaseInput) -> list[Any]:
        """Files to embed in the PDF (e.g. the FHIR DiagnosticReport JSON)."""
        ...

    def package(self, report: Report, pdf: bytes, case: CaseInput, sink: ArtifactSink) -> None:
        """Write this packager's artifacts for the case."""
        ...


@dataclass(frozen=True)
class PipelineDeps:
    """The adapters a run uses; wired once at start-up (service.bootstrap)."""

    screener: Screening
    narrator: Narrator
    fallback_narrator: Narrator
    renderer: Renderer
    summarize: Callable[..., str]
    split_sections: Callable[[str, str], dict[str, str]]
    heatmap: Callable[[Image.Image, Classification], bytes] | None = None
    packagers: Sequence[OutputPackager] = ()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


async def run_case(
    deps: PipelineDeps, case: CaseInput, sink: ArtifactSink, mode: Mode = "diagnose"
) -> AsyncIterator[ev.Event]:
    """Run one case, yielding events; a failure ends with an `error` event, never a hang."""
    started = time.perf_counter()
    stage = "accepted"
    try:
        yield ev.Event(
            ev.ACCEPTED,
            {"case_id": case.case_id, "mode": mode, "received_bytes": len(case.image.source)},
        )
        stage = "screen"
        gate, classification = await asyncio.to_thread(deps.screener.screen, case.image.rgb)
        yield ev.Event(
            ev.VALIDATED,
            {
                "width": case.source.width,
                "height": case.source.height,
                "media_type": case.source.media_type,
                "gate": gate_json(gate),
            },
        )
        yield ev.Event(ev.CLASSIFIED, classification_json(classification))
        summary = deps.summarize(classification, gate, case.patient, case.language)
        yield ev.Event(ev.ANALYSIS, {"summary": summary, "language": case.language})
        if mode == "analyze":
            yield ev.Event(ev.COMPLETED, {"case_id": case.case_id, "links": {}})
            return

        stage = "narrate"
        request = NarrationRequest(
            case_id=case.case_id,
            language=case.language,
            patient=case.patient,
            history=case.history,
            classification=classification,
            gate=gate,
            image=case.image.rgb,
        )
        notices: list[str] = []
        parts: list[str] = []
        narrator = deps.narrator
        for fallback in (deps.fallback_narrator, None):
            parts = []
            try:
                async for chunk in narrator.stream(request):
                    parts.append(chunk)
                    yield ev.Event(ev.REPORT_DELTA, {"text": chunk})
                break
            except NarratorUnavailable as exc:
                if fallback is None:
                    raise
                log.warning(
                    "narrator_unavailable", case_id=case.case_id, narrator=narrator.info.name
                )
                notices.append("narrator_fallback")  # a code: the PDF and page localize it
                yield ev.Event(
                    ev.NARRATOR_FALLBACK,
                    {
                        "from": narrator.info.name,
                        "to": fallback.info.name,
                        "reason": str(exc)[:200],
                        "partial_discarded": bool(parts),
                    },
                )
                narrator = fallback
        narrative = "".join(parts)
        report = Report(
            case_id=case.case_id,
            language=case.language,
            patient=case.patient,
            history=case.history,
            source=case.source,
            classification=classification,
            gate=gate,
            summary=summary,
            sections=deps.split_sections(narrative, case.language),
            narrative=narrative,
            narrator=narrator.info,
            generated_without_llm=narrator.without_llm,
            urgent_referral=prompt_review_advised(classification, gate),
            created_at=_now(),
            notices=tuple(notices),
        )
        report_body = report_json(report)
        yield ev.Event(ev.REPORT_COMPLETED, {"report": report_body})

        stage = "render"
        heatmap_png = None
        if deps.heatmap is not None and gate.status != "rejected":
            heatmap_png = await asyncio.to_thread(deps.heatmap, case.image.rgb, classification)
            sink.put("heatmap", "image/png", heatmap_png)
        attachments = [a for p in deps.packagers for a in p.attachments(report, case)]
        pdf = await asyncio.to_thread(
            deps.renderer.render, report, case.image.rgb, heatmap_png, attachments
        )
        sink.put("pdf", "application/pdf", pdf)
        sink.put("report", "application/json", _json_bytes(report_body))
        links = case_links(case.case_id)
        yield ev.Event(
            ev.PDF_READY,
            {
                "id": case.case_id,
                "size": len(pdf),
                "sha256": hashlib.sha256(pdf).hexdigest(),
                "url": links["pdf"],
            },
        )
        stage = "package"
        for packager in deps.packagers:
            await asyncio.to_thread(packager.package, report, pdf, case, sink)
        yield ev.Event(
            ev.COMPLETED,
            {
                "case_id": case.case_id,
                "links": links,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
    except asyncio.CancelledError:
        log.info("run_cancelled", case_id=case.case_id, stage=stage)
        raise
    except Exception as exc:
        log.error(
            "run_failed",
            case_id=case.case_id,
            stage=stage,
            error=type(exc).__name__,
            where=_where(exc),
        )
        yield ev.Event(ev.ERROR, error_problem(exc, stage))


def error_problem(exc: BaseException, stage: str) -> dict[str, Any]:
    """problem+json body for a failed run; client errors keep their detail, others don't leak."""
    from service.errors import ServiceError

    if isinstance(exc, ServiceError):
        return {**exc.problem(), "stage": stage}
    return {
        "type": "https://skinscreen.dev/problems/pipeline-failed",
        "title": "The report could not be produced",
        "status": 500,
        "detail": f"an internal error stopped the run at stage '{stage}'",
        "code": "pipeline-failed",
        "stage": stage,
    }


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame — a traceback pointer without the message (may hold PHI)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"


def _json_bytes(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body, ensure_ascii=False).encode("utf-8")
