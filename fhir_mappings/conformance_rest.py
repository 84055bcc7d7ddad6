"""`CapabilityStatement.rest.resource`: every resource type served, its interactions and every
search parameter (one list, read by the search door too)."""

from __future__ import annotations

from typing import Any

from fhir_mappings.review_operation import review_capability

_SP = "http://hl7.org/fhir/SearchParameter"

#: (name, type, definition, documentation) of the DiagnosticReport search parameters.
REPORT_SEARCH: tuple[tuple[str, str, str, str], ...] = (
    ("_id", "token", f"{_SP}/Resource-id", "The report id (the case id)."),
    (
        "_lastUpdated",
        "date",
        f"{_SP}/Resource-lastUpdated",
        "When the case last changed (ge|le|gt|lt|eq + an ISO date or instant).",
    ),
    (
        "subject",
        "reference",
        f"{_SP}/DiagnosticReport-subject",
        "Patient/<id> (relative or absolute on this server) or <id>.",
    ),
    ("patient", "reference", f"{_SP}/clinical-patient", "As subject, Patients only."),
    (
        "identifier",
        "token",
        f"{_SP}/clinical-identifier",
        "system|value, |value, system| or value of DiagnosticReport.identifier.",
    ),
    ("status", "token", f"{_SP}/DiagnosticReport-status", "preliminary | final | …"),
    (
        "date",
        "date",
        f"{_SP}/clinical-date",
        "DiagnosticReport.effectiveDateTime: ge|le|gt|lt|eq + an ISO date or instant; repeat "
        "for a range.",
    ),
    ("code", "token", f"{_SP}/clinical-code", "system|code of DiagnosticReport.code."),
)
#: The Patient search parameters.
PATIENT_SEARCH: tuple[tuple[str, str, str, str], ...] = (
    ("_id", "token", f"{_SP}/Resource-id", "The Patient id."),
    (
        "identifier",
        "token",
        f"{_SP}/Patient-identifier",
        "system|value, |value, system| or value of Patient.identifier.",
    ),
)
#: The AuditEvent search parameters (`service.api.audit`).
AUDIT_SEARCH: tuple[tuple[str, str, str, str], ...] = (
    ("date", "date", f"{_SP}/AuditEvent-date", "ge|le|gt|lt|eq + an ISO date or instant."),
    ("agent", "reference", f"{_SP}/AuditEvent-agent", "The client id, or system|id."),
    ("action", "token", f"{_SP}/AuditEvent-action", "C | R | U | D or our action code."),
)
INCLUDES = ("DiagnosticReport:subject", "DiagnosticReport:patient")

REST_DOCUMENTATION = (
    "JSON only (application/fhir+json); XML is not supported: `Accept: application/fhir+xml`, "
    "`_format=xml` and other FHIR versions (`fhirVersion` other than 4.0) are answered with "
    "406, an XML body with 415. Send "
    "`Prefer: respond-async` to DiagnosticReport/$diagnose for a 202 with an absolute "
    "Content-Location status URL: GET it for 202 + X-Progress while the case runs, then a "
    "batch-response Bundle whose one entry holds the DiagnosticReport (response.status "
    "201 Created + its location) or the Bundle, or an OperationOutcome (response.outcome) "
    "when the case failed; DELETE it to cancel a running case or to erase a finished one "
    "(then 404). Searches answer searchset Bundles with total and absolute self/next links "
    "(`_count`, default 20, at most 100; newest first); a client sees only its own cases. "
    "Observations are contained in their DiagnosticReport (`#finding`), not addressable: "
    "search DiagnosticReport instead."
)


def _params(params: tuple[tuple[str, str, str, str], ...]) -> list[dict[str, Any]]:
    return [
        {"name": name, "type": kind, "definition": definition, "documentation": doc}
        for name, kind, definition, doc in params
    ]


def _read_search(kind: str, params: tuple[tuple[str, str, str, str], ...]) -> dict[str, Any]:
    return {
        "type": kind,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": _params(params),
    }


def rest_resources(operation_definition: str) -> list[dict[str, Any]]:
    """The `rest.resource` list; `$diagnose` is a type-level operation on DiagnosticReport."""
    report = _read_search("DiagnosticReport", REPORT_SEARCH)
    report["interaction"] += [{"code": "vread"}, {"code": "history-instance"}]
    report.update(
        versioning="versioned",
        readHistory=True,
        searchInclude=list(INCLUDES),
        operation=[
            {"name": "diagnose", "definition": operation_definition},
            review_capability(),
        ],
        documentation="The AI screening reports: read (ETag = version), vread and _history, "
        "search (owner-scoped), $diagnose and the clinician sign-off $review (a new version: "
        "final / amended). `_count` pages (next links); `_include=DiagnosticReport:subject` "
        "adds the Patients.",
    )
    patient = _read_search("Patient", PATIENT_SEARCH)
    patient["documentation"] = (
        "The patients of the caller's cases, as the requests described them (the subject "
        "Patient/<id>, or an id derived from the first identifier), newest first."
    )
    audit = _read_search("AuditEvent", AUDIT_SEARCH)
    audit["documentation"] = "The audit trail (scope system/AuditEvent.r); `_offset` pages."
    return [
        report,
        patient,
        {"type": "Binary", "interaction": [{"code": "read"}]},
        {"type": "OperationDefinition", "interaction": [{"code": "read"}]},
        {
            "type": "CodeSystem",
            "interaction": [{"code": "read"}],
            "documentation": "The project CodeSystem, at its canonical "
            "(CodeSystem/skin-condition).",
        },
        audit,
        {
            "type": "Observation",
            "documentation": "Not addressable: each finding Observation is contained in its "
            "DiagnosticReport (DiagnosticReport.contained, `#finding`). No read or search; "
            "search DiagnosticReport (subject, patient, code, date) instead.",
        },
    ]
