"""Wire the real adapters from settings, once, at start-up (tests pass their own `Services`).

This is the only place that chooses implementations: the classifier backend, the narrators,
the renderer, the outputs, the store, and the one HTTP client for the FHIR server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from service.fhir_server import FhirServer
from service.intake.cases import Limits
from service.jobs import JobManager
from service.logging import get_logger
from service.pipeline.backends import load_screener, resolve_backend
from service.pipeline.classifier import Classifier
from service.pipeline.domain import Classification, ModelInfo
from service.pipeline.heatmap import explain
from service.pipeline.narrators.base import Narrator
from service.pipeline.narrators.factory import build_narrator, knowledge_fallback
from service.pipeline.narrators.sections import split_sections
from service.pipeline.narrators.summary import summarize
from service.pipeline.ports import OutputAdapter, PipelineDeps
from service.report.pdf import PdfRenderer
from service.settings import Settings
from service.store import Store

log = get_logger(__name__)


@dataclass
class Services:
    """Everything a door needs; one instance per process."""

    settings: Settings
    #: Backend name and model identity, for /ready and logs.
    backend: str
    classifier_info: ModelInfo
    narrator: Narrator
    limits: Limits
    store: Store
    jobs: JobManager
    fhir_server: FhirServer

    async def close(self) -> None:
        """Stop running jobs and close connections (process exit)."""
        await self.jobs.shutdown()
        await self.fhir_server.aclose()


def heatmap_png(
    classifier: Classifier, image: Image.Image, classification: Classification
) -> bytes:
    """Occlusion heatmap PNG for the predicted class."""
    return explain(classifier, image, classifier.classes.index(classification.label)).png


def build_services(
    settings: Settings,
    *,
    outputs: Sequence[OutputAdapter] | None = None,
    store_path: Path | str | None = None,
    fhir_server: FhirServer | None = None,
) -> Services:
    """Load the classifier (once), the gate, the narrators, the renderer, outputs and the store.

    `store_path=":memory:"` keeps nothing on disk (the CLI); `outputs=[]` skips FHIR and DICOM.
    """
    backend = resolve_backend(settings)
    screener = load_screener(settings, backend)
    classifier = screener.classifier
    narrator = build_narrator(settings)
    server = fhir_server or FhirServer(settings)
    path = Path(store_path) if store_path is not None else settings.sqlite_path
    store = Store(path, settings.job_retention_hours, settings.max_jobs_stored)
    store.prune()

    def heatmap(image: Image.Image, classification: Classification) -> bytes:
        return heatmap_png(classifier, image, classification)

    deps = PipelineDeps(
        screener=screener,
        narrator=narrator,
        fallback_narrator=knowledge_fallback(),
        renderer=PdfRenderer(settings.templates_dir),
        summarize=summarize,
        split_sections=split_sections,
        heatmap=heatmap,
        heatmap_in_report=settings.report_heatmap,
        outputs=list(outputs) if outputs is not None else default_outputs(settings, server),
    )
    limits = Limits.from_settings(settings)
    services = Services(
        settings=settings,
        backend=backend,
        classifier_info=classifier.info,
        narrator=narrator,
        limits=limits,
        store=store,
        jobs=JobManager(store, deps, limits, settings.max_concurrent_runs),
        fhir_server=server,
    )
    log.info(
        "services_ready",
        backend=backend,
        model=classifier.info.name,
        narrator=narrator.info.name,
        store=path.name,
    )
    return services


def default_outputs(settings: Settings, server: FhirServer) -> list[OutputAdapter]:
    """FHIR and DICOM outputs, and the write-back when it is on and a server is configured."""
    from service.outputs.dicom import DicomOutput
    from service.outputs.fhir import FhirOutput
    from service.outputs.write_back import FhirWriteBack

    outputs: list[OutputAdapter] = [FhirOutput(), DicomOutput()]
    if settings.fhir_write_back and server.configured:
        outputs.append(FhirWriteBack(server))
    return outputs
