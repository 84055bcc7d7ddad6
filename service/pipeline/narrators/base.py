"""The narrator interface every backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from service.pipeline.domain import Classification, GateOutcome, ModelInfo, Patient, Referral


@dataclass(frozen=True)
class NarrationRequest:
    """Everything a narrator may use. The image is for multimodal models only."""

    case_id: str
    language: str
    patient: Patient
    history: str | None
    classification: Classification
    gate: GateOutcome
    #: The triage decision (`pipeline.policy.referral`); prompts and the output guard read it.
    referral: Referral
    image: Image.Image | None = None


class NarratorUnavailable(RuntimeError):
    """The backend cannot serve now (down, timing out, queue full); the run may fall back."""


class Narrator(Protocol):
    """Streams the narrative sections of a report as text chunks."""

    info: ModelInfo
    #: True when no language model wrote the text (the knowledge narrator).
    without_llm: bool

    def ensure_capacity(self) -> None:
        """Raise `service.errors.ServiceUnavailable` (→ 503 + Retry-After) when the backend's
        queue is full. Called by the HTTP doors before a run starts; a no-op for most backends."""
        ...

    def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        """Yield text chunks; concatenated they form the narrative (section headings included).

        Raise `NarratorUnavailable` before the first chunk when the backend is unreachable.
        """
        ...
