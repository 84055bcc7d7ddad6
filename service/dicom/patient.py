"""The DICOM Patient module as the domain `Patient`: person names, ages and dates."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

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
