"""The DICOM instance index: one row per stored DICOM object (a source case or an artifact).

The index is a cache of headers, rebuilt from what is stored: rows are added for DICOM objects
not indexed yet (`dicom_pending` → `index_dicom`) and vanish with their job (foreign key
cascade), so erasing or pruning a case also removes it from every DICOMweb answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The `kind` of the row for the case's own bytes (other rows carry their artifact kind).
CASE_KIND = "case"
#: The job kind of a DICOM object stored as it is (a report instance sent by STOW-RS): a job
#: born `completed`, with its bytes as the case and one terminal event, so retention, erasure
#: and ownership treat it like any other case.
OBJECT_KIND = "dicom-object"
STORED_EVENT: dict[str, Any] = {"status": "completed", "stored": True}
#: Columns of the `dicom_instances` table, in order.
COLUMNS = (
    "job_id", "kind", "client", "study_uid", "series_uid", "sop_uid", "sop_class_uid",
    "modality", "patient_id", "study_date", "attrs",
)  # fmt: skip
#: The exact-match filters a search may push down to the database.
SEARCH_KEYS = ("study_uid", "series_uid", "sop_uid", "patient_id")


@dataclass(frozen=True)
class DicomEntry:
    """One indexed DICOM object; `attrs` is its header as DICOM JSON (no bulk data).

    An object whose header could not be read is indexed with empty UIDs, so it is not read
    again, and never returned by a search.
    """

    job_id: str
    kind: str
    client: str
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class_uid: str = ""
    modality: str = ""
    patient_id: str = ""
    study_date: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def row(self) -> tuple[Any, ...]:
        """Column values in `COLUMNS` order (attrs still a dict)."""
        return tuple(getattr(self, name) for name in COLUMNS)


@dataclass(frozen=True)
class PendingObject:
    """A stored DICOM object without an index row yet."""

    job_id: str
    kind: str
    client: str
