"""Audit trail records → FHIR R4 `AuditEvent` (https://hl7.org/fhir/R4/auditevent.html).

`type` is always `rest` ("RESTful Operation", CodeSystem audit-event-type): every audited event
— a read or create of a case resource, a token issue, a refusal — is an interaction with this
server's HTTP API, and R4's guidance for RESTful operations pairs that type with `subtype` from
the restful-interaction CodeSystem. One type for every record keeps `AuditEvent?type=` and
reporting uniform; DICOM 110110 "Patient Record" would fit case resources only and claim a
patient-record access for tokens and refusals that touch none. The two actions that are not
FHIR interactions (token issue, login) get a `subtype` from the project's own CodeSystem.

Outcome codes (R4 audit-event-outcome): success → 0; denied and not-found → 4 "Minor failure"
(the request was refused, an HTTP 4xx); failed → 8 "Serious failure" (the server failed, 5xx).
"""

from __future__ import annotations

from typing import Any

from service.store.records import AuditRecord

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
AUDIT_ACTION = "https://skinscreen.dev/fhir/CodeSystem/audit-action"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
CLIENT_SYSTEM = "https://skinscreen.dev/fhir/client"
#: Identifier systems for what is not a FHIR resource: `<PROJECT_SID>/<type in lower case>`.
PROJECT_SID = "https://skinscreen.dev/fhir/sid"

# audit-event-type "rest": R4 CodeSystem audit-event-type
# (https://hl7.org/fhir/R4/codesystem-audit-event-type.html).
REST: dict[str, str] = {"system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
# security-source-type "4" (R4 CodeSystem security-source-type, the audit-source-type value set)
APPLICATION_SERVER: dict[str, str] = {
    "system": SOURCE_TYPE,
    "code": "4",
    "display": "Application Server",
}
# audit-entity-type "2" (R4 CodeSystem audit-entity-type), for what is not a FHIR resource.
SYSTEM_OBJECT: dict[str, str] = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}

#: Our action → (subtype system, code, display; AuditEvent.action). The restful-interaction
#: codes and the action letters are R4's (search and operations are "E" in R4's examples).
_ACTIONS: dict[str, tuple[str, str, str, str]] = {
    "create": (RESTFUL_INTERACTION, "create", "create", "C"),
    "read": (RESTFUL_INTERACTION, "read", "read", "R"),
    "search": (RESTFUL_INTERACTION, "search", "search", "E"),
    "update": (RESTFUL_INTERACTION, "update", "update", "U"),
    "delete": (RESTFUL_INTERACTION, "delete", "delete", "D"),
    "execute": (RESTFUL_INTERACTION, "operation", "operation", "E"),
    "token": (AUDIT_ACTION, "token", "Access token issue", "E"),
    "login": (AUDIT_ACTION, "login", "Login", "E"),
}
_OTHER = (AUDIT_ACTION, "other", "Other action", "E")
OUTCOMES: dict[str, str] = {"success": "0", "denied": "4", "not-found": "4", "failed": "8"}
#: The resource types an audited id can name that FHIR defines (others are this server's own).
FHIR_TYPES = frozenset(
    {
        *("AuditEvent", "Binary", "Bundle", "DiagnosticReport", "DocumentReference"),
        *("ImagingStudy", "Media", "Observation", "OperationDefinition", "Patient"),
        *("Provenance", "CapabilityStatement"),
    }
)


def _action(record: AuditRecord) -> tuple[str, str, str, str]:
    if record.action == "read" and record.resource_id is None:
        return _ACTIONS["search"]  # a read of no one resource is a search
    return _ACTIONS.get(record.action, _OTHER)


def _entity(record: AuditRecord) -> dict[str, Any]:
    what: dict[str, Any]
    if record.resource_type in FHIR_TYPES:
        what = {"reference": f"{record.resource_type}/{record.resource_id}"}
        kind = {"system": RESOURCE_TYPES, "code": record.resource_type}
    else:  # a job, a DICOM instance, a token: not a FHIR resource, so named by an identifier
        what = {
            "identifier": {
                "system": f"{PROJECT_SID}/{record.resource_type.lower()}",
                "value": record.resource_id,
            },
            "display": record.resource_type,
        }
        kind = SYSTEM_OBJECT
    return {"what": what, "type": dict(kind)}


def audit_event(record: AuditRecord, base_url: str | None = None) -> dict[str, Any]:
    """The R4 AuditEvent of one record; `base_url` (this server's FHIR base) is the source site."""
    system, code, display, action = _action(record)
    agent: dict[str, Any] = {
        "who": {"identifier": {"system": CLIENT_SYSTEM, "value": record.client}},
        "requestor": True,
    }
    if record.source:
        agent["network"] = {"address": record.source, "type": "2"}  # 2 = IP address
    source: dict[str, Any] = {
        "observer": {"display": "skinscreen"},
        "type": [dict(APPLICATION_SERVER)],
    }
    if base_url:
        source["site"] = base_url
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": record.id,
        "type": dict(REST),
        "subtype": [{"system": system, "code": code, "display": display}],
        "action": action,
        "recorded": record.at,
        "outcome": OUTCOMES.get(record.outcome, "8"),
        "agent": [agent],
        "source": source,
    }
    if record.detail:
        event["outcomeDesc"] = record.detail  # a machine code, never free text
    if record.resource_id:
        event["entity"] = [_entity(record)]
    return event
