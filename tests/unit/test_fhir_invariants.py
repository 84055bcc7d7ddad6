"""The R4 invariants (FHIRPath, `fhir_mappings.invariants`): they catch what they should, pass
HL7's own examples, and our outputs keep them (every `assert_valid_r4` call checks them too)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_mappings.conformance import capability_statement, operation_definition
from fhir_mappings.inbound import SubjectRef
from fhir_mappings.invariants import check_invariants, errors
from fhir_mappings.outbound import PdfDocument, diagnostic_report, transaction_bundle
from tests.support.factories import make_report
from tests.support.fhir_checks import KNOWN_VIOLATIONS

PDF = PdfDocument(data=b"%PDF-1.7\n%%EOF\n", title="Skin report", language="en")


def _keys(resource: dict[str, Any]) -> set[str]:
    return {v.key for v in check_invariants(resource) if v.severity == "error"}


def test_hl7_examples_keep_every_invariant(shared_dir: Path) -> None:
    folder = shared_dir / "fhir" / "r4"
    files = sorted((folder / "examples").glob("*.json")) + sorted(
        (folder / "synthea").glob("*.json")
    )
    assert len(files) >= 40
    failed = {path.name: errors(json.loads(path.read_text("utf-8"))) for path in files}
    assert {name: found for name, found in failed.items() if found} == {}


@pytest.mark.parametrize(
    ("resource", "key"),
    [
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "valueString": "a", "dataAbsentReason": {"text": "n"}},
            "obs-6",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "contained": [{"resourceType": "Device", "id": "d", "meta": {"security": [
                 {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                  "code": "AIAST"}]}}],
             "device": {"reference": "#d"}},
            "dom-5",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "contained": [{"resourceType": "Device", "id": "lonely"}]},
            "dom-3",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "subject": {"reference": "#missing"}},
            "ref-1",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "valueQuantity": {"value": 1, "code": "%"}},
            "qty-3",
        ),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "effectivePeriod": {"start": "2025-02-01", "end": "2025-01-01"}},
            "per-1",
        ),
        ({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "note": [{}]},
         "ele-1"),
        ({"resourceType": "Bundle", "type": "collection", "total": 1}, "bdl-1"),
        ({"resourceType": "Bundle", "type": "batch-response", "entry": [{"resource": {
            "resourceType": "Patient"}}]}, "bdl-4"),
        ({"resourceType": "Bundle", "type": "searchset",
          "entry": [{"fullUrl": "a"}, {"fullUrl": "a"}]}, "bdl-7"),
        ({"resourceType": "Parameters", "parameter": [{"name": "a"}]}, "inv-1"),
        ({"resourceType": "OperationDefinition", "name": "X", "status": "active",
          "kind": "operation", "code": "x", "system": True, "type": False, "instance": False,
          "parameter": [{"name": "p", "use": "in", "min": 0, "max": "1", "type": "string",
                         "targetProfile": ["http://x"]}]}, "opd-3"),
        ({"resourceType": "CapabilityStatement", "status": "active", "date": "2025",
          "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
          "rest": [{"mode": "server"}]}, "cpb-14"),
        ({"resourceType": "AuditEvent", "entity": [{"name": "n", "query": "cQ=="}]}, "sev-1"),
    ],
)  # fmt: skip
def test_each_kind_of_violation_is_caught(resource: dict[str, Any], key: str) -> None:
    assert key in _keys(resource)


def test_nested_resources_are_checked_where_they_sit() -> None:
    bad = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "valueString": "a", "dataAbsentReason": {"text": "n"}}  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bad}]}
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "r", "resource": bad}]}
    assert [v.where for v in check_invariants(bundle) if v.key == "obs-6"] == [
        "Bundle.entry[0].resource"
    ]
    assert [v.where for v in check_invariants(parameters) if v.key == "obs-6"] == [
        "Parameters.parameter[0].resource"
    ]


def test_our_outputs_keep_the_invariants() -> None:
    report = diagnostic_report(
        make_report(), conclusion="c", pdf=PDF, subject=SubjectRef("Patient/p"), report_id="r1"
    )
    bundle = transaction_bundle(make_report(), conclusion="c", pdf=PDF, image=b"\xff\xd8")
    base = "https://example.org/fhir"
    for resource in (report, bundle, capability_statement(base, "1"), operation_definition()):
        assert errors(resource, KNOWN_VIOLATIONS) == []
    assert "dom-5" not in _keys(report)  # the contained finding carries no security label
    assert all("meta" not in c for c in report["contained"] if c["resourceType"] != "Media")


def test_the_finding_observation_keeps_obs7() -> None:
    """obs-7: the finding's code is none of its components' codes (it has a value)."""
    report = diagnostic_report(make_report(), conclusion="c", pdf=PDF, report_id="r1")
    assert "obs-7" not in _keys(copy.deepcopy(report))
