"""Shared test factories: domain values, cases, and fake adapters for the in-process app.

The fakes stand in for the adapters around the door logic under test (classifier, narrator,
PDF renderer); each of those real adapters has its own tests against the real thing.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from service.bootstrap import Services, new_jobs, new_worker
from service.fhir_server import FhirServer
from service.intake.cases import Intake, Limits, case_from_fields
from service.pipeline.domain import (
    CLASSES,
    Attachment,
    Classification,
    GateOutcome,
    ModelInfo,
    Patient,
    Report,
    SourceImage,
    Status,
)
from service.pipeline.narrators.base import NarrationRequest, NarratorUnavailable
from service.pipeline.narrators.sections import split_sections
from service.pipeline.narrators.summary import summarize
from service.pipeline.policy import referral
from service.pipeline.ports import OutputAdapter, PipelineDeps
from service.reviews import ReviewDesk
from service.settings import Settings
from service.store import SqliteStore

MODEL = ModelInfo("test-classifier", "1", "0" * 64)
#: Malignancy threshold of the fakes (the real ones are fitted per model: models/triage.json).
TEST_THRESHOLD = 0.05
NARRATOR = ModelInfo("test-narrator", "1", "1" * 64, kind="narrator")


def probabilities(top: str = "Acne", p: float = 0.9, **others: float) -> dict[str, float]:
    """Probabilities over the six classes: `top` gets `p`, named others their value, the rest
    share what is left."""
    rest = [c for c in CLASSES if c != top and c not in others]
    left = max(0.0, 1.0 - p - sum(others.values()))
    return {c: p if c == top else others.get(c, left / len(rest) if rest else 0.0) for c in CLASSES}


def classification(top: str = "Acne", p: float = 0.9, **others: float) -> Classification:
    return Classification(probabilities(top, p, **others), MODEL)


def gate(status: Status = "ok", *reasons: str) -> GateOutcome:
    return GateOutcome(status, tuple(reasons))


def narration_request(
    case_id: str = "case-1",
    *,
    result: Classification | None = None,
    patient: Patient | None = None,
    history: str | None = None,
    image: Image.Image | None = None,
    verdict: GateOutcome | None = None,
    language: str = "en",
) -> NarrationRequest:
    """What a narrator gets (default: an `ok` Acne result (90 %), English)."""
    result = result or classification("Acne", 0.9)
    verdict = verdict or GateOutcome(status="ok")
    return NarrationRequest(
        case_id=case_id,
        language=language,
        patient=patient or Patient(age=30, sex="female"),
        history=history,
        classification=result,
        gate=verdict,
        referral=referral(result, verdict, TEST_THRESHOLD),
        image=image,
    )


def jpeg(size: tuple[int, int] = (96, 96), colour: tuple[int, int, int] = (200, 150, 130)) -> bytes:
    """A small solid-colour JPEG (the fake screener does not look at pixels)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def intake(data: bytes | None = None, **fields: str) -> Intake:
    """A case built by the real intake from an upload's bytes and fields."""
    return case_from_fields(data or jpeg(), "image/jpeg", fields, None, Limits())


def make_report(
    status: Status = "ok",
    fhir_reference: str | None = None,
    probs: dict[str, float] | None = None,
) -> Report:
    """A finished report with fixed content (for output mappings and the PDF)."""
    reasons = {"rejected": ("not_skin",), "inconclusive": ("low_confidence",)}.get(status, ())
    result = Classification(probs or probabilities("Acne", 0.71), MODEL)
    verdict = GateOutcome(status, reasons)
    return Report(
        case_id="case-123",
        language="en",
        patient=Patient(name="Test"),
        history=None,
        source=SourceImage("image/jpeg", "cd" * 32, 320, 240, fhir_reference=fhir_reference),
        classification=result,
        gate=verdict,
        summary="s",
        sections={},
        narrative="n",
        narrator=NARRATOR,
        generated_without_llm=True,
        referral=referral(result, verdict, TEST_THRESHOLD),
        created_at="2025-03-01T10:00:00+00:00",
    )


class FixedScreener:
    """Returns a fixed verdict and classification whatever the image."""

    def __init__(
        self, verdict: GateOutcome | None = None, result: Classification | None = None
    ) -> None:
        self.verdict = verdict or gate("ok")
        self.result = result or classification()
        self.malignancy_threshold = TEST_THRESHOLD

    def screen(self, image: Image.Image) -> tuple[GateOutcome, Classification]:
        return self.verdict, self.result


class ScriptedNarrator:
    """Yields `chunks` pieces of text, `delay_s` apart; records how far it got.

    No language model writes it, so the output guard (which checks LLM text) leaves it alone.
    """

    without_llm = True

    def __init__(self, chunks: int = 3, delay_s: float = 0.0, *, full: bool = False) -> None:
        self.info = NARRATOR
        self.chunks = chunks
        self.delay_s = delay_s
        self.produced = 0
        self.closed = asyncio.Event()
        self.full = full  # ensure_capacity raises (503)

    def ensure_capacity(self) -> None:
        if self.full:
            from service.errors import ServiceUnavailable

            raise ServiceUnavailable("narrator queue is full", retry_after=3)

    async def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        try:
            for i in range(self.chunks):
                await asyncio.sleep(self.delay_s)
                self.produced += 1
                yield f"chunk {i} "
        finally:
            self.closed.set()


class UnavailableNarrator(ScriptedNarrator):
    """Gives up before the first chunk, as a down LLM server does."""

    async def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        raise NarratorUnavailable("narrator server unavailable")
        yield ""  # pragma: no cover - makes this an async generator


class FakeRenderer:
    """A 'PDF' that names its case: enough for the doors, which never parse it."""

    def render(
        self,
        report: Report,
        image: Image.Image,
        heatmap_png: bytes | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> bytes:
        reviewed = (
            f" reviewed v{report.version} by {report.review.reviewer}" if report.review else ""
        )
        return b"%PDF-fake " + report.case_id.encode() + reviewed.encode()


def fake_deps(
    screener: FixedScreener | None = None,
    narrator: ScriptedNarrator | None = None,
    outputs: Sequence[OutputAdapter] = (),
    **overrides: Any,
) -> PipelineDeps:
    narrator = narrator or ScriptedNarrator()
    deps = PipelineDeps(
        screener=screener or FixedScreener(),
        narrator=narrator,
        fallback_narrator=ScriptedNarrator(),
        renderer=FakeRenderer(),
        summarize=summarize,
        split_sections=split_sections,
        heatmap=lambda image, c: b"\x89PNG fake heatmap",
        outputs=outputs,
    )
    return replace(deps, **overrides)


def fake_services(
    tmp_path: Path,
    deps: PipelineDeps | None = None,
    settings: Settings | None = None,
    fhir_server: FhirServer | None = None,
    *,
    with_worker: bool = True,
) -> Services:
    """`Services` for `create_app(services=...)`: real store, intake, jobs and worker; fake
    models. The app's start-up starts the worker."""
    settings = settings or Settings(data_dir=tmp_path, job_lease_s=3.0)
    deps = deps or fake_deps()
    store = SqliteStore(tmp_path / "jobs.db")
    limits = Limits.from_settings(settings)
    worker = new_worker(settings, store, deps, limits) if with_worker else None
    return Services(
        settings=settings,
        backend="fake",
        classifier_info=MODEL,
        narrator=deps.narrator,
        limits=limits,
        store=store,
        jobs=new_jobs(settings, store, deps, limits, worker),
        fhir_server=fhir_server or FhirServer(settings),
        reviews=ReviewDesk(store, deps, limits, deps.outputs),
        worker=worker,
    )
