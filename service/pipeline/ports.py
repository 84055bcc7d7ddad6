"""The adapters a run uses, as small interfaces; real ones are wired in `service.bootstrap`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from service.pipeline.case import ArtifactSink, Case
from service.pipeline.domain import Attachment, Classification, GateOutcome, Referral, Report
from service.pipeline.narrators.base import Narrator


class Screening(Protocol):
    """Quality gate + classification in one call."""

    #: The malignancy threshold fitted for this classifier (`pipeline.policy.referral`).
    malignancy_threshold: float

    def screen(self, image: Image.Image) -> tuple[GateOutcome, Classification]:
        """Gate outcome (the one verdict) and classification of one RGB image."""
        ...


class Renderer(Protocol):
    """Turns a report into a PDF."""

    def render(
        self,
        report: Report,
        image: Image.Image,
        heatmap_png: bytes | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> bytes:
        """PDF bytes."""
        ...


class Summarizer(Protocol):
    """The one-paragraph summary of a verdict (no patient data)."""

    def __call__(
        self, classification: Classification, gate: GateOutcome, referral: Referral, language: str
    ) -> str:
        """Two or three sentences in `language`."""
        ...


class OutputAdapter(Protocol):
    """An output of a finished report besides the PDF (FHIR resources, DICOM, write-back)."""

    def attachments(self, report: Report, case: Case) -> list[Attachment]:
        """Files to embed in the PDF (e.g. the FHIR DiagnosticReport JSON)."""
        ...

    async def write(self, report: Report, pdf: bytes, case: Case, sink: ArtifactSink) -> None:
        """Write this output's artifacts for the case (a failure to deliver is recorded,
        never raised, when the report itself is safe)."""
        ...


#: Occlusion heatmap PNG for the predicted class.
Heatmapper = Callable[[Image.Image, Classification], bytes]
#: Narrative text → {section: text} in the report language.
SectionSplitter = Callable[[str, str], dict[str, str]]


@dataclass(frozen=True)
class PipelineDeps:
    """The adapters a run uses; wired once at start-up (service.bootstrap)."""

    screener: Screening
    narrator: Narrator
    fallback_narrator: Narrator
    renderer: Renderer
    summarize: Summarizer
    split_sections: SectionSplitter
    heatmap: Heatmapper | None = None
    #: Put the heatmap in the PDF (classify `explain` uses it either way).
    heatmap_in_report: bool = True
    outputs: Sequence[OutputAdapter] = ()
