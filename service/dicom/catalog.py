"""The catalog of stored DICOM objects: brings the store's instance index up to date and reads
instances back (what QIDO-RS searches and WADO-RS returns).

The index is derived from what the store holds, never written beside it: before a search or a
retrieval, `refresh` reads the header of every DICOM object (a DICOM case's own bytes, an
Encapsulated PDF or SR artifact) that has no index row yet. Any replica can do it, a re-run of a
case replaces its instances under the same UIDs (`subject.case_uid`), and an erased or pruned
case leaves the index with its job.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO

from service.store.base import JobStore
from service.store.dicom_records import CASE_KIND, DicomEntry, PendingObject

_BATCH, _ROUNDS = 100, 20
_BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_BULK_BYTES = 1024


async def refresh(store: JobStore) -> int:
    """Index every stored DICOM object not indexed yet; the number of rows added."""
    added = 0
    for _ in range(_ROUNDS):
        pending = await store.dicom_pending(_BATCH)
        if not pending:
            break
        entries = [await _entry(store, obj) for obj in pending]
        await store.index_dicom(entries)
        added += len(entries)
    return added


async def instance_bytes(store: JobStore, entry: DicomEntry) -> bytes | None:
    """The stored Part 10 bytes of an indexed object (None when it vanished meanwhile)."""
    if entry.kind == CASE_KIND:
        case = await store.get_case(entry.job_id)
        return case[1] if case else None
    artifact = await store.get_artifact(entry.job_id, entry.kind)
    return artifact[1] if artifact else None


async def _entry(store: JobStore, obj: PendingObject) -> DicomEntry:
    data = await instance_bytes(store, DicomEntry(obj.job_id, obj.kind, obj.client))
    if data is None:
        return DicomEntry(obj.job_id, obj.kind, obj.client)
    return await asyncio.to_thread(entry_of, obj, data)


def entry_of(obj: PendingObject, data: bytes) -> DicomEntry:
    """The index row of one object (empty UIDs when its header cannot be read)."""
    try:
        ds = dcmread(DicomBytesIO(data), stop_before_pixels=True)
        attrs = header_json(ds)
    except Exception:  # a stored object that is not readable DICOM is simply not served
        return DicomEntry(obj.job_id, obj.kind, obj.client)
    return DicomEntry(
        job_id=obj.job_id,
        kind=obj.kind,
        client=obj.client,
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        modality=_text(ds, "Modality"),
        patient_id=_text(ds, "PatientID"),
        study_date=_text(ds, "StudyDate"),
        attrs=attrs,
    )


def header_json(ds: Dataset) -> dict[str, Any]:
    """The data set as DICOM JSON without bulk data (pixels, the encapsulated document)."""
    header = Dataset()
    for element in ds:
        if element.tag == 0x00420011:  # Encapsulated Document
            continue
        if element.VR in _BULK_VRS and len(element.value or b"") > _BULK_BYTES:
            continue
        header.add(element)
    return header.to_json_dict()


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()
