"""`$diagnose` request (Parameters or Bundle, FHIR R4 JSON) → DiagnoseInput.

Status policy: not FHIR / structurally invalid / bad base64 → 400 (InvalidFhir); a valid
resource that cannot be used (wrong type, no image, dangling reference, bad code) → 422;
a non-image attachment (e.g. audio/mpeg) → 422 UnsupportedAttachment, not 415, because the
HTTP body itself (application/fhir+json) is supported.

The result types live in `diagnose_input`, the two readers in `inbound_parameters` and
`inbound_bundle`, structural validation in `structure`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir_mappings.attachments import ImageSource
from fhir_mappings.diagnose_input import OUTPUTS, DiagnoseInput, Output, SubjectRef
from fhir_mappings.inbound_bundle import BUNDLE_TYPES, from_bundle
from fhir_mappings.inbound_parameters import PARAMETERS, from_parameters
from fhir_mappings.structure import model_class, validate_structure
from service.errors import FhirUnprocessable, InvalidFhir

__all__ = [
    "BUNDLE_TYPES",
    "OUTPUTS",
    "PARAMETERS",
    "DiagnoseInput",
    "ImageSource",
    "Output",
    "SubjectRef",
    "parse_diagnose_request",
    "validate_structure",
]


def parse_diagnose_request(body: Any, *, today: dt.date | None = None) -> DiagnoseInput:
    """Parse a Parameters or Bundle body; raise a ServiceError with `expression` on failure."""
    if not isinstance(body, dict):
        raise InvalidFhir("the body is not a JSON object (expected a FHIR resource)")
    resource_type = body.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidFhir(
            "the body is not a FHIR resource: resourceType is missing", expression=["resourceType"]
        )
    if resource_type not in ("Parameters", "Bundle"):
        model_class(resource_type, "resourceType")  # unknown type → 400
        raise FhirUnprocessable(
            f"$diagnose takes a Parameters or a Bundle resource, not {resource_type}",
            expression=[resource_type],
        )
    if resource_type == "Parameters":
        validate_structure(body, "Parameters")
        return from_parameters(body, today)
    return from_bundle(body, today)
