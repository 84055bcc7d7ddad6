"""What a parsed `$diagnose` request holds: `DiagnoseInput` and the FHIR subject reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fhir_mappings.attachments import ImageSource
from service.pipeline.domain import Patient

Output = Literal["report", "bundle"]
OUTPUTS: tuple[str, ...] = ("report", "bundle")


@dataclass(frozen=True)
class SubjectRef:
    """The patient as FHIR knows it, for DiagnosticReport.subject."""

    #: "Patient/123", an absolute URL, "urn:uuid:…", or None when only inline without id.
    reference: str | None = None
    #: The original Patient resource when the request carried one.
    resource: dict[str, Any] | None = None

    @property
    def on_server(self) -> bool:
        """True when the reference names a server resource (not a Bundle-local urn:uuid)."""
        return bool(self.reference) and not str(self.reference).startswith("urn:")

    def as_reference(self) -> dict[str, Any] | None:
        """FHIR Reference JSON, or None when there is nothing to refer to."""
        return {"reference": self.reference} if self.reference else None


@dataclass(frozen=True)
class DiagnoseInput:
    """Everything `$diagnose` needs, with FHIR reduced to domain types plus references."""

    patient: Patient
    subject: SubjectRef
    image: ImageSource
    language: str | None = None
    history: str | None = None
    output: Output = "report"
