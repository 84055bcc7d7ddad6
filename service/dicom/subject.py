"""The Patient and General Study modules every report instance of a case shares.

A DICOM source: its study (same StudyInstanceUID, the copied Patient and General Study values).
Any other case: a new study for the patient, with the PN, Patient ID and Issuer of Patient ID
of the FHIR Patient when the request carried one (`identity`), else the domain patient.

UIDs of a case's report instances derive from its case id (`case_uid`), so a re-run of the same
case (a worker took over after a crash) replaces its instances instead of adding new ones, and
the Encapsulated PDF and the SR of an uploaded photo share one new study; a later report version
(after a review) gets new SOP Instance UIDs in the same series.
"""

from __future__ import annotations

from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.dicom.decode import PATIENT_KEYWORDS, STUDY_KEYWORDS
from service.dicom.identity import PatientIdentity
from service.pipeline.case import DicomOrigin
from service.pipeline.domain import Patient

_SEX = {"female": "F", "male": "M", "other": "O"}
#: Type 2 attributes of the Patient and General Study modules (present, possibly empty).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", *STUDY_KEYWORDS[:5])


def case_uid(seed: str | None, purpose: str, version: int = 1) -> str:
    """A UID for `purpose` ("study", "pdf", "sr-series", …) of one case; random without seed.

    `version` > 1 (a reviewed report) gives an instance its own UID: new content, new instance.
    """
    if not seed:
        return generate_uid()
    return generate_uid(entropy_srcs=[seed, purpose if version == 1 else f"{purpose}/v{version}"])


def report_subject(
    source: DicomOrigin | None,
    patient: Patient,
    now: datetime,
    *,
    identity: PatientIdentity | None = None,
    seed: str | None = None,
) -> Dataset:
    """Patient + General Study attributes (and StudyInstanceUID) for the report instances."""
    ds = Dataset()
    if source is not None:
        for keyword in PATIENT_KEYWORDS + STUDY_KEYWORDS:
            if keyword in source.modules:
                setattr(ds, keyword, source.modules[keyword])
        ds.StudyInstanceUID = source.study_instance_uid
    else:
        _patient(ds, patient, identity)
        ds.StudyInstanceUID = case_uid(seed, "study")
        ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.StudyID = now.strftime("AI%Y%m%d%H%M%S")[:16]
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if any(not str(e.value).isascii() for e in ds if e.value is not None):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _patient(ds: Dataset, patient: Patient, identity: PatientIdentity | None) -> None:
    if identity is not None and identity.name:
        ds.PatientName = identity.name
    else:  # free text of unknown structure: kept whole, delimiters removed
        ds.PatientName = (patient.name or "").replace("\\", " ").replace("=", " ")
        ds.PatientName = str(ds.PatientName).replace("^", " ")
    ds.PatientID = (identity.patient_id if identity else "") or patient.identifier or ""
    if identity is not None and identity.issuer:
        ds.IssuerOfPatientID = identity.issuer
    birth = (patient.birth_date or "").replace("-", "")[:8]
    ds.PatientBirthDate = birth if len(birth) == 8 and birth.isdigit() else ""
    ds.PatientSex = _SEX.get(patient.sex or "", "")
    if patient.age is not None and 0 <= patient.age < 1000:
        ds.PatientAge = f"{patient.age:03d}Y"
