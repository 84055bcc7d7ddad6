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


class NarratorFailed(RuntimeError):
    """The narrator did not deliver a complete narrative; the run falls back to the knowledge
    narrator (`narration.narrate`). Subclasses say how it failed."""


class NarratorUnavailable(NarratorFailed):
    """The backend cannot serve now (down, timing out, queue full), before any text."""


class NarratorStreamError(NarratorFailed):
    """The backend failed after the first chunk; the text so far is incomplete."""


class NarratorTruncated(NarratorFailed):
    """The text ended early: no end-of-stream marker, or the token limit was reached."""


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

        Raise `NarratorUnavailable` before the first chunk when the backend is unreachable,
        and any `NarratorFailed` when the text cannot be completed: the run then replaces it.
        """
        ...
