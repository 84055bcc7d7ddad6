"""R4 JSON Schema validator, conformance resources, OperationOutcome and code tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_mappings import codes
from fhir_mappings.conformance import capability_statement, operation_definition
from fhir_mappings.outcome import operation_outcome, operation_outcome_from_validation
from fhir_mappings.validation import optional_validator
from service import errors
from service.pipeline.domain import CLASSES
from tests.support.fhir_checks import assert_valid_r4, schema_validator


@pytest.fixture(scope="module")
def examples(shared_dir: Path) -> dict[str, dict[str, Any]]:
    folder = shared_dir / "fhir" / "r4" / "examples"
    return {
        p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))
    }


def test_official_examples_pass_except_the_nbsp_one(
    examples: dict[str, dict[str, Any]], shared_dir: Path
) -> None:
    validator = schema_validator(shared_dir)
    failing = {name for name, resource in examples.items() if validator.validate(resource)}
    assert len(examples) == 38
    assert failing == {"DiagnosticReport-gingival-mass"}


def test_required_primitives_and_references_are_checked(shared_dir: Path) -> None:
    validator = schema_validator(shared_dir)
    report = {"resourceType": "DiagnosticReport", "code": {"text": "x"}}
    assert validator.validate(report) == ["DiagnosticReport.status: required element missing"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0c3c2f4e-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:0c3c2f4e-0000-4000-8000-0000000000ff"},
                },
                "request": {"method": "POST"},
            }
        ],
    }
    problems = validator.validate(bundle)
    assert "Bundle.entry[0].request.url: required element missing" in problems
    assert any("dangling reference urn:uuid:" in p for p in problems)
    bad_type = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Observation", "status": 3, "code": {"text": "x"}}}
        ],
    }
    assert any(
        p.startswith("Bundle.entry[0].resource/Observation.status")
        for p in validator.validate(bad_type)
    )
    contained = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "x"},
        "result": [{"reference": "#missing"}],
    }
    assert validator.validate(contained) == [
        "DiagnosticReport: dangling contained reference #missing"
    ]


def test_capability_statement_and_operation_definition(shared_dir: Path) -> None:
    statement = capability_statement("https://ehr.example/fhir", "0.1.0")
    definition = operation_definition("https://ehr.example/fhir")
    for resource in (statement, definition):
        assert_valid_r4(resource, shared_dir)
    assert statement["fhirVersion"] == "4.0.1"
    assert "xml" not in json.dumps(statement["format"]).lower()
    assert "XML is not supported" in statement["rest"][0]["documentation"]
    (report,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "DiagnosticReport"]
    assert report["operation"][0]["definition"] == definition["url"]
    names = [p["name"] for p in definition["parameter"]]
    assert names == ["subject", "image", "language", "history", "output", "return"]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.InvalidFhir("x", expression=["Parameters.parameter[0]"]), 400, "structure"),
        (errors.BadRequest("x"), 400, "invalid"),
        (errors.NotFound("x"), 404, "not-found"),
        (errors.NotAcceptable("x"), 406, "not-supported"),
        (errors.UnsupportedMediaType("x"), 415, "not-supported"),
        (errors.PayloadTooLarge("x"), 413, "too-costly"),
        (errors.FhirUnprocessable("x"), 422, "processing"),
        (errors.UnsupportedAttachment("x"), 422, "not-supported"),
        (errors.ServiceUnavailable("x"), 503, "transient"),
    ],
)
def test_operation_outcome_codes(
    error: errors.ServiceError, status: int, code: str, shared_dir: Path
) -> None:
    outcome = operation_outcome(error)
    assert_valid_r4(outcome, shared_dir)
    issue = outcome["issue"][0]
    assert error.status == status
    assert issue["code"] == code
    assert issue["severity"] == ("fatal" if status >= 500 else "error")
    assert issue.get("expression", []) == error.expression


def test_outcome_from_validation(shared_dir: Path) -> None:
    outcome = operation_outcome_from_validation([("Patient.gender", "bad code")])
    assert_valid_r4(outcome, shared_dir)
    assert outcome["issue"][0]["expression"] == ["Patient.gender"]
    ok = operation_outcome_from_validation([])
    assert_valid_r4(ok, shared_dir)
    assert ok["issue"][0]["severity"] == "information"


def test_code_tables_are_consistent() -> None:
    for label in CLASSES:
        concept = codes.condition_concept(label)
        assert concept["coding"][0]["system"] == codes.PROJECT
        systems = {c["system"] for c in concept["coding"][1:]}
        verified = {system for system, *_ in codes.verified_codes(label)}
        assert systems == verified
        for system, name in ((codes.SNOMED, "SNOMED CT"), (codes.ICD10, "ICD-10")):
            if system not in verified:  # every gap is explained
                assert any(key.startswith(label) and name in key for key in codes.UNVERIFIED)
    assert not any(c["code"] == "L72.0" for c in codes.condition_concept("Milia")["coding"])
    with pytest.raises(KeyError):
        codes.condition_concept("Melanoma")


def test_optional_runtime_validator(tmp_path: Path, shared_dir: Path) -> None:
    assert optional_validator(tmp_path / "absent.json") is None
    assert optional_validator(None) is None
    validator = optional_validator(shared_dir / "fhir" / "r4" / "fhir.schema.json")
    assert validator is not None
    assert validator.validate({"resourceType": "Binary"}) == [
        "Binary.contentType: required element missing"
    ]
