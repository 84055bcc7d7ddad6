"""STOW-RS store response (PS3.18 §10.5.3) in DICOM JSON, its HTTP status, and job links.

The body is pure DICOM JSON (tag keys only, so any DICOMweb client parses it). Links to the
screening jobs and reports the service starts for each stored instance travel as RFC 8288
`Link` headers instead, one per instance: `<job-url>; rel="monitor"; anchor="<sop-uid URN>"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from service.dicom.decode import ACCEPTED_SOP_CLASSES, ACCEPTED_TRANSFER_SYNTAXES
from service.errors import (
    DicomMismatch,
    ImageTooLarge,
    InvalidDicom,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    UnsupportedSopClass,
)

#: Failure Reason (0008,1197) values of a Store Instances response (PS3.18 Table 10.5.3-2).
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
SOP_CLASS_NOT_SUPPORTED = 0x0122
PROCESSING_FAILURE = 0x0110
#: Warning Reason (0008,1196): stored, but the data set does not match its SOP class (IOD).
WARNING_DOES_NOT_MATCH_SOP_CLASS = 0xB007


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one instance of a STOW-RS request."""

    sop_class_uid: str
    sop_instance_uid: str
    #: None when stored; a Failure Reason value otherwise.
    failure_reason: int | None = None
    retrieve_url: str | None = None
    #: RFC 8288 relation → URL (e.g. {"monitor": job URL, "alternate": report URL}).
    links: dict[str, str] = field(default_factory=dict)
    #: A Warning Reason value for an instance stored with problems (e.g. IOD errors).
    warning_reason: int | None = None
    #: What the warning is about (attribute keywords, never values).
    warnings: tuple[str, ...] = ()

    @property
    def stored(self) -> bool:
        return self.failure_reason is None


_BY_CODE = {
    UnsupportedSopClass.code: SOP_CLASS_NOT_SUPPORTED,
    DicomMismatch.code: DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    ImageTooLarge.code: OUT_OF_RESOURCES,
    PayloadTooLarge.code: OUT_OF_RESOURCES,
    ServiceUnavailable.code: OUT_OF_RESOURCES,  # the narrator queue or the job queue is full
    "too-many-requests": OUT_OF_RESOURCES,  # this client's share of the queue is used up
}


def read_header(raw: bytes) -> Dataset | None:
    """The header of a Part 10 instance without its pixel data, or None when unreadable.

    A deflated instance is None too: inflating it here would bypass the decoding budget.
    """
    from service.dicom.deflate import is_deflated

    if is_deflated(raw):
        return None
    try:
        from pydicom import dcmread
        from pydicom.filebase import DicomBytesIO

        return dcmread(DicomBytesIO(raw), stop_before_pixels=True, force=False)
    except Exception:  # anything pydicom cannot read is simply "not understood"
        return None


def failure_reason(error: BaseException, header: Dataset | None = None) -> int:
    """The Failure Reason for an error raised (or rebuilt from problem+json) for an instance.

    `header`, the instance's header when it could be read, tells the specific reasons apart:
    a SOP class or a transfer syntax the service does not take.
    """
    if not isinstance(error, ServiceError):
        return PROCESSING_FAILURE
    if header is not None and isinstance(error, InvalidDicom):
        if str(header.get("SOPClassUID", "")) not in ACCEPTED_SOP_CLASSES:
            return SOP_CLASS_NOT_SUPPORTED
        syntax = str(getattr(header, "file_meta", Dataset()).get("TransferSyntaxUID", ""))
        if syntax and syntax not in ACCEPTED_TRANSFER_SYNTAXES:
            return TRANSFER_SYNTAX_NOT_SUPPORTED
    if error.code in _BY_CODE:
        return _BY_CODE[error.code]
    return CANNOT_UNDERSTAND if 400 <= error.status < 500 else PROCESSING_FAILURE


def store_response(
    study_uid: str | None, retrieve_base: str | None, outcomes: Sequence[StoreOutcome]
) -> dict[str, Any]:
    """The Store Instances response data set: RetrieveURL, Referenced and Failed SOP Sequences.

    `retrieve_base` is the DICOMweb root (".../dicomweb"); the study RetrieveURL is only given
    when both it and `study_uid` are known and at least one instance was stored.
    """
    body: dict[str, Any] = {}
    stored = [o for o in outcomes if o.stored]
    failed = [o for o in outcomes if not o.stored]
    if retrieve_base and study_uid and stored:
        body["00081190"] = _ur(f"{retrieve_base.rstrip('/')}/studies/{study_uid}")
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed_item(o) for o in failed]}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_referenced_item(o) for o in stored]}
    return body


def store_status(outcomes: Sequence[StoreOutcome]) -> int:
    """200 when all were stored cleanly, 202 when some failed or carry a warning, 409 when all
    failed (PS3.18 §10.5.3)."""
    if not outcomes:
        raise ValueError("a store response needs at least one outcome")
    failed = sum(1 for o in outcomes if not o.stored)
    if failed == 0:
        return 202 if any(o.warning_reason is not None for o in outcomes) else 200
    return 409 if failed == len(outcomes) else 202


def link_header(outcomes: Sequence[StoreOutcome]) -> str | None:
    """One RFC 8288 `Link` header value for all outcomes' links, anchored at each instance."""
    links = [
        f'<{url}>; rel="{rel}"; anchor="urn:oid:{o.sop_instance_uid}"'
        for o in outcomes
        for rel, url in o.links.items()
    ]
    return ", ".join(links) or None


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _ur(value: str) -> dict[str, Any]:
    return {"vr": "UR", "Value": [value]}


def _referenced_item(outcome: StoreOutcome) -> dict[str, Any]:
    item = {"00081150": _ui(outcome.sop_class_uid), "00081155": _ui(outcome.sop_instance_uid)}
    if outcome.retrieve_url:
        item["00081190"] = _ur(outcome.retrieve_url)
    if outcome.warning_reason is not None:
        item["00081196"] = {"vr": "US", "Value": [outcome.warning_reason]}
    return item


def _failed_item(outcome: StoreOutcome) -> dict[str, Any]:
    return {
        "00081150": _ui(outcome.sop_class_uid),
        "00081155": _ui(outcome.sop_instance_uid),
        "00081197": {"vr": "US", "Value": [outcome.failure_reason]},
    }
