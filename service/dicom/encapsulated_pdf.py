"""Wrap a report PDF as a DICOM Encapsulated PDF instance (PS3.3 A.45.1), Part 10 bytes.

When the image came as DICOM the report joins its study (same StudyInstanceUID, copied Patient
and General Study modules) and references the source image; otherwise it opens a new study for
the domain patient. The AI models are named in the Contributing Equipment Sequence with purpose
(109102, DCM, "Processing Equipment"): they processed instances to create a new one. 109103
"Modifying Equipment" would claim the source was changed, 109101 that it was acquired.

The document concept is (18748-4, LN, "Diagnostic Imaging Report"), the root of CID 7000
Diagnostic Imaging Report Document Titles: a report about an image, not a pathology or
progress note. VerificationFlag is UNVERIFIED: no clinician has signed it.
"""

from __future__ import annotations

import io
from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from service import __version__
from service.dicom.identity import PatientIdentity
from service.dicom.subject import case_uid, report_subject
from service.pipeline.case import DicomOrigin
from service.pipeline.domain import ModelInfo, Patient

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
SERIES_NUMBER = 9001


def encapsulated_pdf(
    pdf: bytes,
    source: DicomOrigin | None,
    patient: Patient,
    model: ModelInfo,
    narrator: ModelInfo,
    title: str,
    language: str,
    now: datetime,
    *,
    identity: PatientIdentity | None = None,
    seed: str | None = None,
    version: int = 1,
) -> bytes:
    """Part 10 bytes of an Encapsulated PDF Storage instance holding `pdf`.

    `identity`: the PN and identifiers of a FHIR Patient (cases without a DICOM source);
    `seed`: the case id the UIDs derive from (`subject.case_uid`), random UIDs without it.
    """
    ds = report_subject(source, patient, now, identity=identity, seed=seed)
    if source is not None:
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.sop_class_uid
        reference.ReferencedSOPInstanceUID = source.sop_instance_uid
        ds.SourceInstanceSequence = Sequence([reference])
    ds.Modality, ds.SeriesNumber = "DOC", SERIES_NUMBER
    ds.SeriesInstanceUID = case_uid(seed, "pdf-series")
    ds.SeriesDate, ds.SeriesTime = _da(now), _tm(now)
    ds.SeriesDescription = f"AI skin screening report ({language})"
    ds.Manufacturer, ds.ManufacturerModelName = "skinscreen", "skinscreen"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = _da(now), _tm(now)
    ds.AcquisitionDateTime = _dt(now)
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.VerificationFlag = "UNVERIFIED"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + b"\x00" * (len(pdf) % 2)
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.SOPClassUID, ds.SOPInstanceUID = ENCAPSULATED_PDF_STORAGE, case_uid(seed, "pdf", version)
    ds.InstanceCreationDate, ds.InstanceCreationTime = _da(now), _tm(now)
    if now.utcoffset() is not None:
        ds.TimezoneOffsetFromUTC = now.strftime("%z")
    ds.ContributingEquipmentSequence = Sequence([_equipment(m, now) for m in (model, narrator)])
    if _needs_utf8(ds):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return _part10(ds)


def _equipment(model: ModelInfo, now: datetime) -> Dataset:
    item = Dataset()
    item.Manufacturer = "skinscreen"
    item.ManufacturerModelName = model.name[:64]
    item.SoftwareVersions = model.version[:64]
    if model.sha256:
        item.DeviceSerialNumber = model.sha256[:64]
    item.ContributionDateTime = _dt(now)
    item.ContributionDescription = f"AI {model.kind} (sha256 {model.sha256 or 'n/a'})"
    item.PurposeOfReferenceCodeSequence = Sequence([_code("109102", "DCM", "Processing Equipment")])
    return item


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _needs_utf8(ds: Dataset) -> bool:
    """True when any text value (at any depth) holds non-ASCII characters."""
    for elem in ds.iterall():
        if elem.VR in {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}:
            values = elem.value if elem.VM > 1 else [elem.value]
            if any(not str(v).isascii() for v in values if v is not None):
                return True
    return False


def _part10(ds: Dataset) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _da(now: datetime) -> str:
    return now.strftime("%Y%m%d")


def _tm(now: datetime) -> str:
    return now.strftime("%H%M%S")


def _dt(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S") + (
        now.strftime("%z") if now.utcoffset() is not None else ""
    )
