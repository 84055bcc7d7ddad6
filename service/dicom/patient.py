"""The DICOM Patient module as the domain `Patient`: person names, ages and dates."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

from service.errors import InvalidDicom
from service.pipeline.domain import Patient

_AGE = re.compile(r"^(\d{3})([DWMY])$")
_EAST_ASIAN = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u4e00-\u9fff\uac00-\ud7af]")


def patient_from_dataset(ds: Dataset, *, today: date | None = None) -> Patient:
    """The Patient module as a domain `Patient` (names decoded with the data set's charset)."""
    birth = _parse_da(ds.get("PatientBirthDate"))
    reference = _parse_da(ds.get("StudyDate")) or today or date.today()
    age = parse_age(str(ds.get("PatientAge") or ""))
    if age is None and birth is not None and birth <= reference:
        age = (
            reference.year
            - birth.year
            - ((reference.month, reference.day) < (birth.month, birth.day))
        )
    patient_id = str(ds.get("PatientID") or "").strip()
    return Patient(
        name=format_person_name(ds.get("PatientName")),
        age=age,
        sex=_SEX.get(str(ds.get("PatientSex") or "").strip().upper()),
        birth_date=birth.isoformat() if birth else None,
        identifier=patient_id or None,
    )


_SEX: dict[str, Literal["female", "male", "other"]] = {"F": "female", "M": "male", "O": "other"}
#: Patient and General Study attributes a report instance copies (see `decode.DicomImage.origin`).
COPIED_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
)  # fmt: skip
#: PS3.5 §6.2 maximum value lengths in characters (PN: per component group).
_MAX_CHARS = {
    "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "PN": 64, "SH": 16,
    "TM": 16, "UI": 64, "ST": 1024, "LT": 10240,
}  # fmt: skip


def check_copied_header(ds: Dataset) -> None:
    """422 when a header value a report instance copies breaks its VR's length (PS3.5 §6.2):
    a Person Name of more than 3 component groups, 5 components or 64 characters per group,
    or any other copied value longer than its VR allows. The report never carries such a value,
    and nothing downstream (the PDF, the FHIR output) is asked to lay it out."""
    for keyword in COPIED_KEYWORDS:
        if keyword not in ds:
            continue
        element = ds[keyword]
        values = element.value if element.VM > 1 else [element.value]
        if element.VM > 1 and element.VR == "PN":
            raise _header_error(keyword, "a Person Name holds one value")
        for value in values:
            problem = _value_problem(element.VR, "" if value is None else str(value))
            if problem:
                raise _header_error(keyword, problem)


def _value_problem(vr: str, text: str) -> str | None:
    limit = _MAX_CHARS.get(vr)
    if vr == "PN":
        groups = text.split("=")
        if len(groups) > 3 or any(len(g.split("^")) > 5 for g in groups):
            return "a Person Name has at most 3 component groups of 5 components"
        if any(len(group) > 64 for group in groups):
            return "a Person Name component group has at most 64 characters"
        return None
    if limit is not None and len(text) > limit:
        return f"a value of VR {vr} has at most {limit} characters"
    return None


def _header_error(keyword: str, message: str) -> InvalidDicom:
    return InvalidDicom(f"{keyword}: {message} (PS3.5 §6.2)", expression=[keyword])


def parse_age(value: str) -> int | None:
    """An Age String ("045Y", "018M", "010W", "003D") in whole years, else None."""
    match = _AGE.match(value.strip())
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2)
    return {"Y": number, "M": number // 12, "W": number // 52, "D": number // 365}[unit]


def _parse_da(value: Any) -> date | None:
    text = str(value or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def format_person_name(value: Any) -> str | None:
    """A PN value for people: "Given Middle Family", or "FamilyGiven" in East Asian scripts.

    The first non-empty component group (alphabetic, ideographic, phonetic) is used.
    """
    if value is None:
        return None
    name = value if isinstance(value, PersonName) else PersonName(str(value))
    for group in str(name).split("="):
        parts = [p.strip() for p in (group.split("^") + [""] * 5)[:5]]
        family, given, middle, prefix, suffix = parts
        if not any(parts):
            continue
        if _EAST_ASIAN.search(family + given):
            return "".join(p for p in (family, given) if p) or None
        return " ".join(p for p in (prefix, given, middle, family, suffix) if p)
    return None
