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
from service.pipeline.classifier import Classifier, onnx_models
from service.pipeline.domain import Classification, ModelInfo
from service.pipeline.heatmap import explain
from service.pipeline.narrators.base import Narrator
from service.pipeline.narrators.factory import build_narrator, knowledge_fallback
from service.pipeline.narrators.sections import split_sections
from service.pipeline.narrators.summary import summarize
from service.pipeline.ports import OutputAdapter, PipelineDeps
from service.report.pdf import PdfRenderer
from service.reviews import ReviewDesk
from service.settings import Settings
from service.store import JobStore, SealingKeyError, open_store
from service.worker import Worker

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
    store: JobStore
    jobs: JobManager
    fhir_server: FhirServer
    #: Clinician sign-off of finished reports (a new version of every output).
    reviews: ReviewDesk
    #: The in-process worker (`serve` without `--no-worker`, the CLI), or None.
    worker: Worker | None = None

    async def start(self) -> None:
        """Start the in-process worker, if any (process start-up)."""
        if self.worker is not None:
            await self.worker.start()

    async def close(self) -> None:
        """Stop the worker (finish or release its cases) and close connections (process exit)."""
        if self.worker is not None:
            await self.worker.stop(self.settings.shutdown_grace_s)
        await self.fhir_server.aclose()
        close_narrator = getattr(self.narrator, "aclose", None)
        if close_narrator is not None:
            await close_narrator()
        await self.store.close()


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
    with_worker: bool = True,
) -> Services:
    """Load the classifier (once), the gate, the narrators, the renderer, outputs and the store.

    `store_path=":memory:"` keeps nothing on disk (the CLI); `outputs=[]` skips FHIR and DICOM;
    `with_worker=False` makes an API-only process (`serve --no-worker`).
    """
    try:  # first: a key file that cannot be used stops the start before models load
        store = open_store(settings, store_path)
    except SealingKeyError as refused:  # says which file and why, never the key
        log.error("store.encryption_key_refused", reason=str(refused))
        raise
    backend = resolve_backend(settings)
    screener = load_screener(settings, backend)
    classifier = screener.classifier
    for model in {id(m): m for m in onnx_models(classifier)}.values():
        model.share_passes(settings.classify_max_batch)
    narrator = build_narrator(settings)
    server = fhir_server or FhirServer(settings)

    def heatmap(image: Image.Image, classification: Classification) -> bytes:
        return heatmap_png(classifier, image, classification)

    deps = PipelineDeps(
        screener=screener,
        narrator=narrator,
        fallback_narrator=knowledge_fallback(),
        renderer=PdfRenderer(settings.templates_dir, budget_s=settings.pdf_render_budget_s),
        summarize=summarize,
        split_sections=split_sections,
        heatmap=heatmap,
        heatmap_in_report=settings.report_heatmap,
        outputs=list(outputs) if outputs is not None else default_outputs(settings, server, store),
    )
    limits = Limits.from_settings(settings)
    worker = new_worker(settings, store, deps, limits) if with_worker else None
    reviews = ReviewDesk(store, deps, limits, review_outputs(deps.outputs))
    services = Services(
        settings=settings,
        backend=backend,
        classifier_info=classifier.info,
        narrator=narrator,
        limits=limits,
        store=store,
        jobs=new_jobs(settings, store, deps, limits, worker),
        fhir_server=server,
        reviews=reviews,
        worker=worker,
    )
    log.info(
        "services_ready",
        backend=backend,
        model=classifier.info.name,
        narrator=narrator.info.name,
        store=store.backend,
        worker=worker is not None,
    )
    return services


def new_jobs(
    settings: Settings,
    store: JobStore,
    deps: PipelineDeps,
    limits: Limits,
    worker: Worker | None,
) -> JobManager:
    """The API side of the jobs, with the configured admission bounds."""
    return JobManager(
        store,
        deps,
        limits,
        max_queued=settings.max_queued_jobs,
        max_queued_per_client=settings.max_queued_per_client,
        worker=worker,
    )


def new_worker(
    settings: Settings, store: JobStore, deps: PipelineDeps, limits: Limits, concurrency: int = 0
) -> Worker:
    """A worker with the configured lease, attempts and concurrency."""
    return Worker(
        store,
        deps,
        limits,
        concurrency=concurrency or settings.max_concurrent_runs,
        lease_s=settings.job_lease_s,
        max_attempts=settings.job_max_attempts,
    )


def review_outputs(outputs: Sequence[OutputAdapter]) -> list[OutputAdapter]:
    """The outputs a clinician review re-issues: all but the write-back to an EHR server."""
    from service.outputs.write_back import FhirWriteBack

    return [output for output in outputs if not isinstance(output, FhirWriteBack)]


def default_outputs(
    settings: Settings, server: FhirServer, store: JobStore | None = None
) -> list[OutputAdapter]:
    """FHIR and DICOM outputs (the DICOM push when `dicom_push_url` is set, audited in
    `store`), and the write-back when it is on and a server is configured."""
    from service.outputs.dicom import DicomOutput
    from service.outputs.dicom_push import DicomPusher
    from service.outputs.fhir import FhirOutput
    from service.outputs.write_back import FhirWriteBack
    from service.security.audit import AuditLog

    audit = AuditLog(store) if store is not None else None
    push = DicomPusher.from_settings(settings, audit)
    outputs: list[OutputAdapter] = [FhirOutput(), DicomOutput(push)]
    if settings.fhir_write_back and server.configured:
        outputs.append(FhirWriteBack(server))
    return outputs
