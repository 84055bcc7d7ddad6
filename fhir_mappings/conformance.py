"""CapabilityStatement and the `skin-diagnose` OperationDefinition (R4 4.0.1, JSON only)."""

from __future__ import annotations

from typing import Any

from fhir_mappings.conformance_rest import REST_DOCUMENTATION, rest_resources

OPERATION_CODE = "diagnose"
OPERATION_ID = "skin-diagnose"
_DATE = "2025-01-01"
#: R4 core extension: another type a polymorphic operation parameter may have.
ALLOWED_TYPE = "http://hl7.org/fhir/StructureDefinition/operationdefinition-allowed-type"


#: The stable canonical of `$diagnose`'s OperationDefinition (also served at
#: `<base>/OperationDefinition/skin-diagnose`).
CANONICAL_BASE = "https://skinscreen.dev/fhir"


def operation_url(_base_url: str | None = None) -> str:
    """Canonical URL of the OperationDefinition (the same on every server)."""
    return f"{CANONICAL_BASE}/OperationDefinition/{OPERATION_ID}"


def capability_statement(
    base_url: str, version: str, token_url: str | None = None
) -> dict[str, Any]:
    """What this server does: `$diagnose` on DiagnosticReport (sync and async), read and search
    of DiagnosticReport and Patient, read of Binary, OperationDefinition and CodeSystem, search
    and read of AuditEvent. JSON only: XML is not supported. With `token_url` (authentication
    on) `rest.security` advertises SMART Backend Services."""
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _DATE,
        "publisher": "skinscreen",
        "kind": "instance",
        "software": {"name": "skinscreen", "version": version},
        "implementation": {
            "description": "AI skin-condition screening (decision support, not a diagnosis)",
            "url": base_url,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": REST_DOCUMENTATION,
                "resource": rest_resources(operation_url()),
            }
        ],
    }
    if token_url:
        statement["rest"][0]["security"] = smart_security(token_url)  # type: ignore[index]
    return statement


def smart_security(token_url: str) -> dict[str, Any]:
    """`rest.security` for SMART Backend Services (SMART App Launch: the `SMART-on-FHIR`
    service code and the oauth-uris extension with the token endpoint)."""
    return {
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": token_url}],
            }
        ],
        "description": "SMART Backend Services (client_credentials, private_key_jwt) or an "
        "API key (X-API-Key / Bearer)",
    }


def operation_definition(_base_url: str | None = None) -> dict[str, Any]:
    """OperationDefinition for `DiagnosticReport/$diagnose` (type level only: there is no
    system-level `POST /fhir/$diagnose`). Its canonical is the same on every server."""
    return {
        "resourceType": "OperationDefinition",
        "id": OPERATION_ID,
        "url": operation_url(),
        "name": "SkinDiagnose",
        "title": "AI skin-condition screening of a photograph",
        "status": "active",
        "kind": "operation",
        "date": _DATE,
        "description": "Classifies a clinical skin photograph into six classes and returns a "
        "DiagnosticReport (with PDF) or a transaction Bundle. The body may also be a Bundle "
        "(e.g. a Synthea export) holding a Patient and a Media/DocumentReference/Binary image.",
        "affectsState": False,
        "code": OPERATION_CODE,
        "resource": ["DiagnosticReport"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": [
            _in(
                "subject",
                0,
                "The patient: a Patient resource or a reference to one.",
                type_="Reference",
                target=["http://hl7.org/fhir/StructureDefinition/Patient"],
            ),
            {
                **_in(
                    "image",
                    1,
                    "The photograph: a valueAttachment (image/jpeg, image/png, image/webp; "
                    "data, or a url on the configured FHIR server), or a resource — Media, "
                    "DocumentReference or Binary — carrying one. R4 gives a parameter one type, "
                    "so `type` is Element and the allowed-type extensions list the four.",
                    type_="Element",
                ),
                "extension": [
                    {"url": ALLOWED_TYPE, "valueUri": kind}
                    for kind in ("Attachment", "Media", "DocumentReference", "Binary")
                ],
            },
            _in("language", 0, "Report language: ko, en or vi.", type_="code"),
            _in("history", 0, "Free-text clinical history.", type_="string"),
            _in(
                "output",
                0,
                "report (a DiagnosticReport, default) or bundle (a transaction "
                "Bundle ready to POST to an EHR).",
                type_="code",
            ),
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "documentation": "DiagnosticReport or Bundle, per `output`.",
                "type": "Resource",
            },
        ],
    }


def _in(
    name: str, minimum: int, doc: str, *, type_: str, target: list[str] | None = None
) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": name,
        "use": "in",
        "min": minimum,
        "max": "1",
        "documentation": doc,
        "type": type_,
    }
    if target:
        parameter["targetProfile"] = target
    return parameter
