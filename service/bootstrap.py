"""Wire the real adapters from settings, once, at start-up (tests may pass their own)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from PIL import Image

from service.jobs import JobManager
from service.logging import get_logger
from service.pipeline.backends import load_screener, resolve_backend
from service.pipeline.classifier import Classifier
from service.pipeline.domain import Classification, GateOutcome
from service.pipeline.heatmap import explain
from service.pipeline.narrators.base import Narrator
from service.pipeline.narrators.factory import build_narrator, knowledge_fallback
from service.pipeline.narrators.sections import split_sections
from service.pipeline.narrators.summary import summarize
from service.pipeline.run import OutputPackager, PipelineDeps
from service.pipeline.screening import Screener
from service.report.pdf import PdfRenderer
from service.settings import Settings
from service.store import Store

log = get_logger(__name__)


@dataclass
class Services:
    """Everything a door needs; one instance per process."""

    settings: Settings
    backend: str
    classifier: Classifier
    screener: Screener
    narrator: Narrator
    deps: PipelineDeps
    store: Store
    jobs: JobManager

    async def screen(self, image: Image.Image) -> tuple[GateOutcome, Classification]:
        """Gate + classify off the event loop."""
        return await asyncio.to_thread(self.screener.screen, image)

    async def explain(self, image: Image.Image, classification: Classification) -> bytes:
        """Occlusion heatmap PNG for the predicted class, off the event loop."""
        return await asyncio.to_thread(heatmap_png, self.classifier, image, classification)


def heatmap_png(
    classifier: Classifier, image: Image.Image, classification: Classification
) -> bytes:
    """Occlusion heatmap PNG for the predicted class."""
    return explain(classifier, image, classifier.classes.index(classification.label)).png


def build_services(settings: Settings, packagers: list[OutputPackager] | None = None) -> Services:
    """Load the classifier (once), the gate, the narrators, the renderer and the store."""
    backend = resolve_backend(settings)
    screener = load_screener(settings, backend)
    classifier = screener.classifier
    narrator = build_narrator(settings)
    store = Store(settings.sqlite_path, settings.job_retention_hours, settings.max_jobs_stored)
    store.prune()
    services_packagers = packagers if packagers is not None else default_packagers(settings)

    def heatmap(image: Image.Image, classification: Classification) -> bytes:
        return heatmap_png(classifier, image, classification)

    deps = PipelineDeps(
        screener=screener,
        narrator=narrator,
        fallback_narrator=knowledge_fallback(),
        renderer=PdfRenderer(settings.templates_dir),
        summarize=summarize,
        split_sections=split_sections,
        heatmap=heatmap if settings.report_heatmap else None,
        packagers=services_packagers,
    )
    services = Services(
        settings=settings,
        backend=backend,
        classifier=classifier,
        screener=screener,
        narrator=narrator,
        deps=deps,
        store=store,
        jobs=JobManager(store, deps, settings.max_concurrent_runs),
    )
    log.info(
        "services_ready",
        backend=backend,
        model=classifier.info.name,
        narrator=narrator.info.name,
        store=str(settings.sqlite_path.name),
    )
    return services


def default_packagers(settings: Settings) -> list[OutputPackager]:
    """FHIR and DICOM outputs."""
    from service.packaging import DicomPackager, FhirPackager

    return [FhirPackager(settings), DicomPackager()]
