"""What a door hands to the pipeline: one decoded image plus its context."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from service.intake.images import DecodedImage
from service.pipeline.domain import Patient, SourceImage

Mode = Literal["analyze", "diagnose"]


@dataclass(frozen=True)
class CaseInput:
    """A case ready to run. `origin` carries door-specific context (the parsed DICOM header,
    the FHIR Patient reference) to the output packagers; the pipeline never looks inside."""

    case_id: str
    image: DecodedImage
    source: SourceImage
    patient: Patient
    history: str | None
    language: str
    origin: dict[str, Any] = field(default_factory=dict)


def new_case_id() -> str:
    """A random, URL-safe case id (also the job id and the report id)."""
    return uuid.uuid4().hex


class ArtifactSink(Protocol):
    """Where the pipeline puts what it produces (PDF, heatmap, FHIR JSON, DICOM)."""

    def put(self, kind: str, media_type: str, content: bytes) -> None:
        """Store one artifact of the current case."""
        ...


class MemorySink:
    """An ArtifactSink that keeps everything in a dict (CLI, blocking calls, tests)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, bytes]] = {}

    def put(self, kind: str, media_type: str, content: bytes) -> None:
        self.items[kind] = (media_type, content)
