"""Every bound a case must respect, and the strict parsers behind them (pure, no I/O).

Applied once, by `intake.cases.build_case`, whichever door a case came through: text lengths
(name, identifier, history), no control characters or lone surrogates in any text, a whole
number of years 0–130, a birth date between 1900 and today, and — for DICOM — every header
value a report instance copies within its VR's length (PN: 64 characters per component group).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from service.errors import Unprocessable
from service.images import ImageLimits
from service.pipeline.domain import Patient
from service.settings import Settings

MAX_AGE_YEARS = 130
EARLIEST_BIRTH_YEAR = 1900
MAX_IDENTIFIER_CHARS = 64  # DICOM PatientID (LO) — a report instance carries it
_AGE = re.compile(r"[0-9]{1,3}")  # ASCII digits only: int() takes "1_0_0", " 12", "١٢"
_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
_LINE_BREAKS = frozenset("\t\n\r")


@dataclass(frozen=True)
class Limits:
    """Every bound a case must respect, whichever door it came through."""

    image: ImageLimits = field(default_factory=ImageLimits)
    max_name_chars: int = 200
    max_history_chars: int = 4000
    default_language: str = "en"
    max_identifier_chars: int = MAX_IDENTIFIER_CHARS

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits configured for this service."""
        return cls(
            image=ImageLimits(
                settings.max_image_pixels,
                settings.min_image_side,
                decode_workers=settings.decode_concurrency,
            ),
            max_name_chars=settings.max_name_chars,
            max_history_chars=settings.max_history_chars,
            default_language=settings.default_language,
        )


def field_error(name: str, message: str) -> Unprocessable:
    """A 422 naming one field."""
    return Unprocessable(
        f"invalid {name}: {message}",
        expression=[name],
        errors=[{"field": name, "message": message}],
    )


def parse_age(text: str) -> int:
    """A whole number of years, 0–130, written with 1 to 3 ASCII digits; else ValueError."""
    if not _AGE.fullmatch(text):
        raise ValueError(text)
    age = int(text)
    if age > MAX_AGE_YEARS:
        raise ValueError(text)
    return age


def text_problem(value: str, max_chars: int, *, multiline: bool = False) -> str | None:
    """Why `value` is not acceptable text (too long, a control character, a lone surrogate)."""
    if len(value) > max_chars:
        return f"at most {max_chars} characters"
    for char in value:
        category = unicodedata.category(char)
        if category == "Cs":
            return "not valid Unicode (a lone surrogate)"
        if category == "Cc" and not (multiline and char in _LINE_BREAKS):
            return "control characters are not allowed"
    return None


def check_text_field(
    name: str, value: str | None, max_chars: int, *, multiline: bool = False
) -> None:
    """422 naming `name` unless `value` is acceptable text."""
    if value and (problem := text_problem(value, max_chars, multiline=multiline)):
        raise field_error(name, problem)


def parse_birth_date(text: str, today: date) -> date:
    """The earliest day a FHIR/ISO birth date (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) can mean;
    ValueError unless it is a real date between 1900-01-01 and `today`."""
    match = _DATE.fullmatch(text.strip())
    if not match:
        raise ValueError(text)
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise ValueError(text)
    born = date(year, month, day)
    if year < EARLIEST_BIRTH_YEAR or born > today:
        raise ValueError(text)
    return born


def check_patient(patient: Patient, limits: Limits, today: date | None = None) -> None:
    """422 unless every patient value is plausible: the checks every door shares."""
    check_text_field("patient_name", patient.name, limits.max_name_chars)
    check_text_field("patient_identifier", patient.identifier, limits.max_identifier_chars)
    for key, value in patient.extra.items():
        check_text_field(key[:40], value, limits.max_name_chars)
    if patient.birth_date is not None:
        try:
            parse_birth_date(patient.birth_date, today or date.today())
        except ValueError:
            raise field_error(
                "patient_birth_date",
                f"a date (YYYY, YYYY-MM or YYYY-MM-DD) from {EARLIEST_BIRTH_YEAR} to today",
            ) from None
    if patient.age is not None and not 0 <= patient.age <= MAX_AGE_YEARS:
        raise field_error("patient_age", f"a whole number of years, 0–{MAX_AGE_YEARS}")
