"""FHIR search semantics over the stored search index (`fhir_mappings.search_index`).

token: `system|code`, `|code` (no system), `system|` (any code of the system) or `code` (any
system); a comma means OR, a repeated parameter AND. reference: `Patient/<id>`, `<id>` or an
absolute URL on this server. date: `date_bounds` of the AuditEvent search (prefixes ge le gt
lt eq, at the value's precision). Values are compared as stored; nothing is case-folded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.api.audit import date_bounds
from service.errors import BadRequest
from service.store.records import JobRecord, utc_ms

MAX_COUNT = 100
DEFAULT_COUNT = 20
#: Result parameters: read by the paging code, not matched against the index.
RESULT_PARAMS = {"_count", "_offset", "_include", "_format", "_sort"}


@dataclass(frozen=True)
class Row:
    """One searchable case: its job and its index."""

    job: JobRecord
    index: dict[str, Any]


def _token_matches(tokens: list[dict[str, str]], query: str) -> bool:
    for alternative in query.split(","):
        if "|" in alternative:
            system, _, code = alternative.partition("|")
            for token in tokens:
                same_system = token.get("system", "") == system
                if same_system and (code == "" or token.get("value") == code):
                    return True
        elif any(token.get("value") == alternative for token in tokens):
            return True
    return False


def _reference_matches(index: dict[str, Any], query: str, base: str, patients_only: bool) -> bool:
    patient = index.get("patient") or {}
    subject = index.get("subject") or ""
    for alternative in query.split(","):
        value = alternative.removeprefix(f"{base}/")
        if value and "/" not in value:
            if patient.get("id") == value:
                return True
            continue
        if value == subject and (not patients_only or subject.startswith("Patient/")):
            return True
        if value == f"Patient/{patient.get('id')}":
            return True
    return False


def _date_range(values: list[str], name: str) -> Callable[[str | None], bool]:
    """A test of an instant against repeated date search values (400 when one is not one)."""
    try:
        since, until = date_bounds(values)
    except BadRequest:
        raise BadRequest(
            f"{name}={values[0][:40]!r} is not a FHIR date search value "
            "(ge|le|gt|lt|eq + YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]])",
            expression=[name],
        ) from None

    def within(moment: str | None) -> bool:
        if not moment:
            return False
        try:
            stamp = utc_ms(moment.replace("Z", "+00:00"))
        except ValueError:
            return False
        return (since is None or stamp >= since) and (until is None or stamp < until)

    return within


def report_filter(name: str, values: list[str], base: str) -> Callable[[Row], bool] | None:
    """The predicate of one DiagnosticReport search parameter, or None when not supported."""

    def tokens(field: str) -> Callable[[Row], bool]:
        return lambda row: all(_token_matches(row.index.get(field) or [], v) for v in values)

    def status_tokens(row: Row) -> list[dict[str, str]]:
        return [{"value": str(row.index.get("status"))}]

    table: dict[str, Callable[[Row], bool]] = {
        "_id": lambda row: all(row.job.id in v.split(",") for v in values),
        "identifier": tokens("identifier"),
        "code": tokens("code"),
        "status": lambda row: all(_token_matches(status_tokens(row), v) for v in values),
        "subject": lambda row: all(_reference_matches(row.index, v, base, False) for v in values),
        "patient": lambda row: all(_reference_matches(row.index, v, base, True) for v in values),
    }
    if name in ("date", "_lastUpdated"):
        within = _date_range(values, name)
        if name == "date":
            return lambda row: within(row.index.get("date"))
        return lambda row: within(row.job.updated)
    return table.get(name)


def patient_filter(name: str, values: list[str]) -> Callable[[dict[str, Any]], bool] | None:
    """The predicate of one Patient search parameter over an index `patient` entry."""
    table: dict[str, Callable[[dict[str, Any]], bool]] = {
        "_id": lambda p: all(p["id"] in v.split(",") for v in values),
        "identifier": lambda p: all(_token_matches(p.get("identifier") or [], v) for v in values),
    }
    return table.get(name)


def paging(query: dict[str, list[str]]) -> tuple[int, int]:
    """(`_count`, `_offset`): `_count` 0‥100 (default 20), `_offset` 0‥10⁹."""

    def number(name: str, default: int, high: int) -> int:
        raw = (query.get(name) or [str(default)])[-1]
        if not raw.isdigit() or int(raw) > 10**9:
            raise BadRequest(f"{name}={raw[:20]!r} must be a whole number", expression=[name])
        return min(int(raw), high)

    return number("_count", DEFAULT_COUNT, MAX_COUNT), number("_offset", 0, 10**9)
