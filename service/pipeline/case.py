"""A case: the serialisable value every door builds and every run consumes.

A `Case` is the original bytes as received, the typed patient, the history, the report
language and a typed `Origin` (upload, FHIR or DICOM). `Case.record()` is its JSON form
without the bytes; `Case.from_record(record, data)` rebuilds an equal case, so a case can be
written to a store before it is acknowledged and run again later from what was stored.
Nothing about a case lives only in memory (the decoded pixels are re-derived from `data`).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from service.pipeline.domain import Patient, SourceImage

Mode = Literal["classify", "analyze", "diagnose"]
FhirOutput = Literal["report", "bundle"]
DICOM_MEDIA_TYPE = "application/dicom"


@dataclass(frozen=True)
class UploadOrigin:
    """A plain upload (REST multipart or raw body, the CLI, the web page)."""

    kind: Literal["upload"] = "upload"


@dataclass(frozen=True)
class FhirOrigin:
    """A FHIR `$diagnose` request: who the report is about and what the caller wants back."""

    output: FhirOutput = "report"
    #: DiagnosticReport.subject: "Patient/123", an absolute URL, "urn:uuid:…", or None.
    subject_reference: str | None = None
    #: The Patient resource the request carried inline (FHIR JSON), if any.
    subject_resource: dict[str, Any] | None = None
    #: `Patient/<id>` on the configured FHIR server, when the subject was resolved there.
    server_patient: str | None = None
    kind: Literal["fhir"] = "fhir"


@dataclass(frozen=True)
class DicomOrigin:
    """A DICOM instance (REST upload or STOW-RS): what the report instance must copy.

    `modules` holds the Patient and General Study attribute values of the source header as
    text (keyword → value, decoded with the source's character set).
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modules: dict[str, str] = field(default_factory=dict)
    kind: Literal["dicom"] = "dicom"


Origin = UploadOrigin | FhirOrigin | DicomOrigin


@dataclass(frozen=True)
class Case:
    """A case ready to run (see the module docstring)."""

    case_id: str
    #: The original bytes as received (image file or DICOM Part 10).
    data: bytes
    source: SourceImage
    patient: Patient
    history: str | None
    language: str
    origin: Origin = field(default_factory=UploadOrigin)

    @property
    def is_dicom(self) -> bool:
        """True when `data` is a DICOM Part 10 instance."""
        return self.source.media_type == DICOM_MEDIA_TYPE

    def record(self) -> dict[str, Any]:
        """JSON-ready form of everything but `data` (which a store keeps as a blob)."""
        return {
            "version": 1,
            "case_id": self.case_id,
            "source": asdict(self.source),
            "patient": asdict(self.patient),
            "history": self.history,
            "language": self.language,
            "origin": asdict(self.origin),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], data: bytes) -> Case:
        """The case `record()` described, with its bytes."""
        if record.get("version") != 1:
            raise ValueError(f"unknown case record version {record.get('version')!r}")
        return cls(
            case_id=str(record["case_id"]),
            data=data,
            source=SourceImage(**record["source"]),
            patient=Patient(**record["patient"]),
            history=record["history"],
            language=str(record["language"]),
            origin=origin_from_json(record["origin"]),
        )


def origin_from_json(body: dict[str, Any]) -> Origin:
    """The typed origin of a `Case.record()["origin"]`."""
    kind = body.get("kind")
    fields = {k: v for k, v in body.items() if k != "kind"}
    if kind == "upload":
        return UploadOrigin()
    if kind == "fhir":
        return FhirOrigin(**fields)
    if kind == "dicom":
        return DicomOrigin(**fields)
    raise ValueError(f"unknown case origin {kind!r}")


def new_case_id() -> str:
    """A random, URL-safe case id (also the job id and the report id)."""
    return uuid.uuid4().hex


class ArtifactSink(Protocol):
    """Where the pipeline and the outputs put what they produce (PDF, heatmap, FHIR, DICOM)."""

    def put(self, kind: str, media_type: str, content: bytes) -> None:
        """Store one artifact of the current case."""
        ...


class MemorySink:
    """An ArtifactSink that keeps everything in a dict (CLI, classify/analyze, tests)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, bytes]] = {}

    def put(self, kind: str, media_type: str, content: bytes) -> None:
        self.items[kind] = (media_type, content)
