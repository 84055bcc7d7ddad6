"""FHIR Patient → domain Patient (display name, age at a given date, sex, identifier)."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any, Literal, cast

from service.errors import FhirUnprocessable
from service.pipeline.domain import Patient

Sex = Literal["female", "male", "other", "unknown"]
_SEXES: frozenset[str] = frozenset({"female", "male", "other", "unknown"})
_NAME_USE_ORDER = ("official", "usual", None)


def domain_patient(
    resource: dict[str, Any], expression: str, today: dt.date | None = None
) -> Patient:
    """Map a (structurally valid) Patient resource; `expression` locates it in the request."""
    gender = resource.get("gender")
    if gender is not None and gender not in _SEXES:
        raise FhirUnprocessable(
            f"Patient.gender must be one of {sorted(_SEXES)}",
            expression=[f"{expression}.gender"],
        )
    birth_date = resource.get("birthDate")
    reference_day = _deceased_day(resource) or today or dt.date.today()
    return Patient(
        name=display_name(resource.get("name") or []),
        age=age_at(birth_date, reference_day) if isinstance(birth_date, str) else None,
        sex=cast(Sex | None, gender),
        birth_date=birth_date if isinstance(birth_date, str) else None,
        identifier=_identifier(resource.get("identifier") or []),
    )


def display_name(names: list[dict[str, Any]]) -> str | None:
    """Text of the best HumanName (official, then usual, then the first), without titles."""
    for use in _NAME_USE_ORDER:
        for name in names:
            if use is None or name.get("use") == use:
                text = (
                    name.get("text")
                    or " ".join([*(name.get("given") or []), name.get("family") or ""]).strip()
                )
                if text:
                    return str(text)
    return None


def age_at(birth_date: str, day: dt.date) -> int | None:
    """Completed years at `day`; a partial date (YYYY or YYYY-MM) gives the lowest possible age."""
    parts = birth_date[:10].split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 12
        last_day = calendar.monthrange(year, month)[1]
        born = dt.date(year, month, int(parts[2]) if len(parts) > 2 else last_day)
    except (ValueError, IndexError):
        return None
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    return years if years >= 0 else None


def _deceased_day(resource: dict[str, Any]) -> dt.date | None:
    value = resource.get("deceasedDateTime")
    try:
        return dt.date.fromisoformat(value[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _identifier(identifiers: list[dict[str, Any]]) -> str | None:
    ranked = sorted(identifiers, key=lambda i: {"official": 0, "usual": 1}.get(i.get("use", ""), 2))
    for identifier in ranked:
        if identifier.get("value"):
            return str(identifier["value"])
    return None
