"""FHIR checks shared by the tests: a resource is valid R4 by four independent checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhirclient.models.fhirelementfactory import FHIRElementFactory

from fhir_mappings.invariants import errors as invariant_errors
from fhir_mappings.validation import R4SchemaValidator

_VALIDATORS: dict[Path, R4SchemaValidator] = {}

#: Invariants known to fail on what we emit today (none: every output keeps every R4 invariant).
KNOWN_VIOLATIONS: frozenset[str] = frozenset()


def schema_validator(shared_dir: Path) -> R4SchemaValidator:
    """One compiled validator per schema path for the whole session."""
    path = shared_dir / "fhir" / "r4" / "fhir.schema.json"
    if path not in _VALIDATORS:
        _VALIDATORS[path] = R4SchemaValidator(path)
    return _VALIDATORS[path]


def assert_valid_r4(resource: dict[str, Any], shared_dir: Path) -> None:
    """The official R4 schema, the R4 invariants (FHIRPath, `fhir_mappings.invariants`),
    fhirclient (R4) and fhir.resources (R4B) all accept it."""
    assert schema_validator(shared_dir).validate(resource) == []
    assert invariant_errors(resource, KNOWN_VIOLATIONS) == []
    parsed = FHIRElementFactory.instantiate(
        resource["resourceType"], json.loads(json.dumps(resource))
    )
    assert parsed.as_json()["resourceType"] == resource["resourceType"]
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
