"""STOW-RS store response (PS3.18 §10.5.3) in DICOM JSON, its HTTP status, and job links.

The body is pure DICOM JSON (tag keys only, so any DICOMweb client parses it). Links to the
screening jobs and reports the service starts for each stored instance travel as RFC 8288
`Link` headers instead, one per instance: `<job-url>; rel="monitor"; anchor="<sop-uid URN>"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.errors import (
    DicomMismatch,
    ImageTooLarge,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    UnsupportedSopClass,
)

#: Failure Reason (0008,1197) values used by STOW-RS (PS3.18 / PS3.4 C-STORE statuses).
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122
PROCESSING_FAILURE = 0x0110


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


def failure_reason(error: BaseException) -> int:
    """The Failure Reason for an error raised (or rebuilt from problem+json) for an instance."""
    if not isinstance(error, ServiceError):
        return PROCESSING_FAILURE
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
    """200 when all were stored, 202 when some failed, 409 when all failed."""
    if not outcomes:
        raise ValueError("a store response needs at least one outcome")
    failed = sum(1 for o in outcomes if not o.stored)
    if failed == 0:
        return 200
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
    return item


def _failed_item(outcome: StoreOutcome) -> dict[str, Any]:
    return {
        "00081150": _ui(outcome.sop_class_uid),
        "00081155": _ui(outcome.sop_instance_uid),
        "00081197": {"vr": "US", "Value": [outcome.failure_reason]},
    }
