"""DICOM objects STOW-RS keeps as they are, without screening them: report instances.

Another skinscreen (or any AI gateway) pushes its Encapsulated PDF and Comprehensive SR results
here; they are stored, indexed and served by QIDO-RS / WADO-RS like the photographs, but no
pipeline job runs on them. Only these SOP classes are kept this way; any other non-photograph
(e.g. a Basic Text SR) is refused with Failure Reason 0x0122.
"""

from __future__ import annotations

import hashlib

from pydicom.dataset import Dataset

from service.dicom.patient import patient_from_dataset
from service.pipeline.case import DICOM_MEDIA_TYPE, Case, DicomOrigin
from service.pipeline.domain import SourceImage

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
STORED_AS_IS: dict[str, str] = {
    ENCAPSULATED_PDF: "Encapsulated PDF Storage",
    COMPREHENSIVE_SR: "Comprehensive SR Storage",
}
_IDENTIFIERS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
)


def stored_as_is(header: Dataset | None) -> bool:
    """True for a report instance STOW-RS keeps without screening it."""
    return header is not None and str(header.get("SOPClassUID", "")) in STORED_AS_IS


def object_case(case_id: str, raw: bytes, header: Dataset) -> Case:
    """The case a stored object is kept as (its bytes, patient and identifiers; no pixels)."""
    text = {k: str(header.get(k, "") or "").strip() for k in _IDENTIFIERS}
    source = SourceImage(
        media_type=DICOM_MEDIA_TYPE,
        sha256=hashlib.sha256(raw).hexdigest(),
        width=0,
        height=0,
        dicom={k: v for k, v in text.items() if v},
    )
    origin = DicomOrigin(
        study_instance_uid=text["StudyInstanceUID"],
        series_instance_uid=text["SeriesInstanceUID"],
        sop_instance_uid=text["SOPInstanceUID"],
        sop_class_uid=text["SOPClassUID"],
    )
    return Case(
        case_id=case_id,
        data=raw,
        source=source,
        patient=patient_from_dataset(header),
        history=None,
        language="en",
        origin=origin,
    )
