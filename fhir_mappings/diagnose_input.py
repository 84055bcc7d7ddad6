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

    def as_reference(self, *, local: bool = True) -> dict[str, Any] | None:
        """FHIR Reference JSON with the patient's identifier and name as `display`, so the
        link survives when the reference cannot be followed; None when there is nothing.

        `local=False` (a resource that travels alone, e.g. a self-contained DiagnosticReport)
        leaves out a Bundle-local `urn:uuid` reference, which would dangle there."""
        body: dict[str, Any] = {}
        if self.reference and (local or self.on_server):
            body["reference"] = self.reference
        if identifier := self.identifier():
            body["identifier"] = identifier
        if display := self.display():
            body["display"] = display
        return body or None

    def identifier(self) -> dict[str, Any] | None:
        """The first identifier of the Patient resource that has a value."""
        for item in (self.resource or {}).get("identifier") or []:
            if isinstance(item, dict) and isinstance(item.get("value"), str) and item["value"]:
                return {k: item[k] for k in ("system", "value") if isinstance(item.get(k), str)}
        return None

    def display(self) -> str | None:
        """The Patient's name as text (`HumanName.text`, else family then given names)."""
        for name in (self.resource or {}).get("name") or []:
            if not isinstance(name, dict):
                continue
            if isinstance(name.get("text"), str) and name["text"].strip():
                return str(name["text"]).strip()[:200]
            parts = [name.get("family"), *(name.get("given") or [])]
            text = " ".join(p for p in parts if isinstance(p, str) and p.strip())
            if text:
                return text[:200]
        return None


@dataclass(frozen=True)
class DiagnoseInput:
    """Everything `$diagnose` needs, with FHIR reduced to domain types plus references."""

    patient: Patient
    subject: SubjectRef
    image: ImageSource
    language: str | None = None
    history: str | None = None
    output: Output = "report"
