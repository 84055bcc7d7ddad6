"""ServiceError / validation problems → OperationOutcome (R4 JSON)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.errors import ServiceError

#: issue.code by ServiceError.code, where the status alone would say too little.
_BY_ERROR_CODE: dict[str, str] = {
    "invalid-fhir": "structure",
    "unsupported-attachment": "not-supported",
    "unsupported-language": "code-invalid",
    "fetch-not-allowed": "security",
    "image-too-large": "too-costly",
}
#: issue.code by HTTP status.
_BY_STATUS: dict[int, str] = {
    400: "invalid",
    404: "not-found",
    406: "not-supported",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    503: "transient",
    507: "no-store",
}


def issue_code(error: ServiceError) -> str:
    """The OperationOutcome issue type for an error."""
    return _BY_ERROR_CODE.get(error.code) or _BY_STATUS.get(
        error.status, "exception" if error.status >= 500 else "invalid"
    )


def operation_outcome(error: ServiceError) -> dict[str, Any]:
    """One `error` issue (`fatal` for 5xx) with diagnostics and expressions."""
    issue: dict[str, Any] = {
        "severity": "fatal" if error.status >= 500 else "error",
        "code": issue_code(error),
        "details": {
            "text": error.title,
            "coding": [{"system": "https://skinscreen.dev/problems", "code": error.code}],
        },
        "diagnostics": error.detail,
    }
    if error.expression:
        issue["expression"] = list(error.expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def operation_outcome_from_validation(
    problems: Iterable[tuple[str, str]], *, severity: str = "error", code: str = "invalid"
) -> dict[str, Any]:
    """One issue per (expression, message); an `information` "all OK" issue when none."""
    issues: list[dict[str, Any]] = [
        {"severity": severity, "code": code, "diagnostics": message, "expression": [expression]}
        for expression, message in problems
    ]
    if not issues:
        issues = [{"severity": "information", "code": "informational", "diagnostics": "All OK"}]
    return {"resourceType": "OperationOutcome", "issue": issues}
