"""The one pipeline run: an async generator of events that every door consumes.

    screen (gate + classify) → [classify ends] → summary → [analyze ends]
        → narrate (stream) → report → PDF → outputs (FHIR, DICOM, write-back)

SSE streams these events, blocking doors await the `RunResult` folded from them, jobs persist
them. The run knows nothing of HTTP, FHIR or DICOM: it gets a `Case` and its decoded pixels,
and outputs beyond the PDF come from injected `OutputAdapter`s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from PIL import Image

from service import metrics
from service.errors import ServiceError
from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.case import ArtifactSink, Case, Mode
from service.pipeline.domain import Classification, GateOutcome, Report
from service.pipeline.links import case_links
from service.pipeline.narration import Narration, narrate
from service.pipeline.narrators.base import NarrationRequest
from service.pipeline.policy import referral as triage
from service.pipeline.ports import PipelineDeps
from service.pipeline.report_json import classification_json, gate_json, report_json
from service.pipeline.report_record import report_record

#: Artifact kind of the lossless report record (what a clinician review re-issues from).
REPORT_RECORD = "report-record"

log = get_logger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


async def run_case(
    deps: PipelineDeps,
    case: Case,
    image: Image.Image,
    sink: ArtifactSink,
    mode: Mode = "diagnose",
    *,
    explain: bool = False,
) -> AsyncIterator[ev.Event]:
    """Run one case, yielding events; a failure ends with an `error` event, never a hang.

    `explain` adds the occlusion heatmap to a `classify` run (diagnose runs add it to the PDF
    when a heatmap adapter is wired).
    """
    started = time.perf_counter()
    stage = "accepted"
    try:
        yield ev.Event(
            ev.ACCEPTED,
            ev.AcceptedData(case_id=case.case_id, mode=mode, received_bytes=len(case.data)),
        )
        stage = "screen"
        with metrics.timed_stage("screen"):
            gate, classification = await asyncio.to_thread(deps.screener.screen, image)
        yield ev.Event(
            ev.VALIDATED,
            ev.ValidatedData(
                width=case.source.width,
                height=case.source.height,
                media_type=case.source.media_type,
                gate=gate_json(gate),
            ),
        )
        referral = triage(classification, gate, deps.screener.malignancy_threshold)
        yield ev.Event(ev.CLASSIFIED, classification_json(classification, gate, referral))
        if mode == "classify":
            if explain:
                await _heatmap(deps, image, classification, gate, sink)
            yield _completed(case, {}, started)
            return
        summary = deps.summarize(classification, gate, referral, case.language)
        yield ev.Event(ev.ANALYSIS, ev.AnalysisData(summary=summary, language=case.language))
        if mode == "analyze":
            yield _completed(case, {}, started)
            return

        stage = "narrate"
        narration = Narration(deps.narrator)
        request = NarrationRequest(
            case_id=case.case_id,
            language=case.language,
            patient=case.patient,
            history=case.history,
            classification=classification,
            gate=gate,
            referral=referral,
            image=image,
        )
        narrate_started = time.perf_counter()
        async for event in narrate(deps.narrator, deps.fallback_narrator, request, narration):
            yield event
        metrics.observe_stage("narrate", time.perf_counter() - narrate_started)
        report = Report(
            case_id=case.case_id,
            language=case.language,
            patient=case.patient,
            history=case.history,
            source=case.source,
            classification=classification,
            gate=gate,
            summary=summary,
            sections=deps.split_sections(narration.text, case.language),
            narrative=narration.text,
            narrator=narration.narrator.info,
            generated_without_llm=narration.narrator.without_llm,
            referral=referral,
            created_at=_now(),
            notices=tuple(narration.notices),
        )
        report_body = report_json(report)
        yield ev.Event(ev.REPORT_COMPLETED, ev.ReportCompletedData(report=report_body))

        stage = "render"
        heatmap_png = None
        if deps.heatmap_in_report:
            heatmap_png = await _heatmap(deps, image, classification, gate, sink)
        attachments = [a for output in deps.outputs for a in output.attachments(report, case)]
        with metrics.timed_stage("render"):
            pdf = await asyncio.to_thread(
                deps.renderer.render, report, image, heatmap_png, attachments
            )
        sink.put("pdf", "application/pdf", pdf)
        sink.put("report", "application/json", _json_bytes(report_body))
        sink.put(REPORT_RECORD, "application/json", report_record(report))
        links = case_links(case.case_id)
        yield ev.Event(
            ev.PDF_READY,
            ev.PdfReadyData(
                id=case.case_id,
                size=len(pdf),
                sha256=hashlib.sha256(pdf).hexdigest(),
                url=links["pdf"],
            ),
        )
        stage = "package"
        with metrics.timed_stage("package"):
            for output in deps.outputs:
                await output.write(report, pdf, case, sink)
        yield _completed(case, links, started)
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


async def _heatmap(
    deps: PipelineDeps,
    image: Image.Image,
    classification: Classification,
    gate: GateOutcome,
    sink: ArtifactSink,
) -> bytes | None:
    """The heatmap PNG (also put in the sink), or None when not wired or the photo is rejected."""
    if deps.heatmap is None or gate.status == "rejected":
        return None
    png = await asyncio.to_thread(deps.heatmap, image, classification)
    sink.put("heatmap", "image/png", png)
    return png


def _completed(case: Case, links: dict[str, str], started: float) -> ev.Event:
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    return ev.Event(
        ev.COMPLETED, ev.CompletedData(case_id=case.case_id, links=links, elapsed_ms=elapsed)
    )


def error_problem(exc: BaseException, stage: str) -> dict[str, Any]:
    """problem+json body for a failed run; client errors keep their detail, others don't leak."""
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
    return json.dumps(body, ensure_ascii=False).encode("utf-8")
