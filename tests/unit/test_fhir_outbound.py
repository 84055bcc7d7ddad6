"""Outbound builders: DiagnosticReport (self-contained) and transaction Bundle."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fhir_mappings import codes
from fhir_mappings.inbound import SubjectRef
from fhir_mappings.outbound import PdfDocument, diagnostic_report, transaction_bundle
from service.pipeline.domain import Review, Status
from tests.support.factories import MODEL, make_report
from tests.support.fhir_checks import assert_valid_r4

PDF = PdfDocument(data=b"%PDF-1.7\n% test pdf body\n%%EOF\n", title="Skin report", language="en")


def _contained(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in report.get("contained", []) if c["resourceType"] == kind]


def test_unreviewed_report_is_a_preliminary_ai_suspicion(shared_dir: Path) -> None:
    subject = SubjectRef("Patient/example")
    report = diagnostic_report(
        make_report(), conclusion="Likely acne.", pdf=PDF, subject=subject, report_id="r1"
    )
    assert_valid_r4(report, shared_dir)
    assert report["status"] == "preliminary"
    assert report["subject"] == {"reference": "Patient/example"}
    assert report["meta"]["security"] == [codes.AIAST]
    assert report["meta"]["versionId"] == "1"
    assert report["conclusion"] == "Likely acne."
    assert "conclusionCode" not in report and "resultsInterpreter" not in report
    form = report["presentedForm"][0]
    assert form["contentType"] == "application/pdf"
    assert form["size"] == len(PDF.data)
    assert form["hash"] == base64.b64encode(hashlib.sha1(PDF.data).digest()).decode()
    assert base64.b64decode(form["data"]) == PDF.data
    (finding,) = _contained(report, "Observation")
    assert finding["status"] == "preliminary" and "meta" not in finding  # dom-5
    assert finding["code"] == codes.SUSPECTED_FINDING
    assert finding["valueCodeableConcept"]["coding"] == codes.condition_concept("Acne")["coding"]
    assert "unconfirmed" in finding["valueCodeableConcept"]["text"]
    probabilities = {c["code"]["coding"][0]["code"]: c for c in finding["component"]}
    assert probabilities["probability-acne"]["valueQuantity"] == {
        "value": 71.0,
        "unit": "%",
        "system": codes.UCUM,
        "code": "%",
    }
    assert len(finding["component"]) == 7  # six probabilities and the triage level
    # Carcinoma at 5.8 % reaches the test threshold (5 %): urgent, though the finding is acne
    assert probabilities["triage-referral"]["valueCodeableConcept"]["coding"][0]["code"] == (
        "referral-urgent"
    )
    # obs-7: the finding's code is none of its components' codes
    assert all(c["code"] != finding["code"] for c in finding["component"])
    assert finding["device"] == {"reference": "#classifier"}
    assert finding["derivedFrom"] == [{"reference": "#image"}]
    assert report["media"][0]["link"] == {"reference": "#image"}
    devices = {d["id"]: d for d in _contained(report, "Device")}
    assert devices["classifier"]["identifier"][0]["value"] == MODEL.sha256
    assert devices["classifier"]["version"] == [{"value": MODEL.version}]
    (provenance,) = _contained(report, "Provenance")
    assert [a["who"]["reference"] for a in provenance["agent"]] == ["#classifier", "#narrator"]


def test_server_media_is_linked_and_pdf_url_used(shared_dir: Path) -> None:
    pdf = PdfDocument(PDF.data, "Báo cáo", "vi", url="Binary/pdf-1")
    report = diagnostic_report(make_report(fhir_reference="Media/example"), conclusion="x", pdf=pdf)
    assert_valid_r4(report, shared_dir)
    assert report["media"][0]["link"] == {"reference": "Media/example"}
    assert not _contained(report, "Media")
    assert report["presentedForm"][0]["url"] == "Binary/pdf-1"
    assert "data" not in report["presentedForm"][0]
    assert "subject" not in report


@pytest.mark.parametrize(
    ("status", "fhir_status", "results"),
    [("inconclusive", "preliminary", 1), ("rejected", "preliminary", 0)],
)
def test_inconclusive_and_rejected(
    status: Status, fhir_status: str, results: int, shared_dir: Path
) -> None:
    report = diagnostic_report(make_report(status), conclusion="Image not assessable.", pdf=PDF)
    assert_valid_r4(report, shared_dir)
    assert report["status"] == fhir_status
    assert "conclusionCode" not in report
    assert len(report.get("result", [])) == results
    assert len(_contained(report, "Observation")) == results


def test_transaction_bundle_references_server_patient(shared_dir: Path) -> None:
    bundle = transaction_bundle(
        make_report(),
        conclusion="x",
        pdf=PDF,
        subject=SubjectRef("Patient/example"),
        image=b"\xff\xd8jpeg",
    )
    assert_valid_r4(bundle, shared_dir)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert sorted(kinds) == [
        "Binary",
        "Device",
        "Device",
        "DiagnosticReport",
        "Media",
        "Observation",
        "Provenance",
    ]
    assert all(
        e["request"]["method"] == "POST" and e["fullUrl"].startswith("urn:uuid:")
        for e in bundle["entry"]
    )
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    report = by_type["DiagnosticReport"]["resource"]
    assert report["subject"] == {"reference": "Patient/example"}
    assert report["result"] == [{"reference": by_type["Observation"]["fullUrl"]}]
    assert report["media"][0]["link"] == {"reference": by_type["Media"]["fullUrl"]}
    media = by_type["Media"]["resource"]
    assert base64.b64decode(media["content"]["data"]) == b"\xff\xd8jpeg"
    targets = {t["reference"] for t in by_type["Provenance"]["resource"]["target"]}
    assert by_type["DiagnosticReport"]["fullUrl"] in targets


def test_transaction_bundle_includes_unsaved_patient(shared_dir: Path) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:x", "value": "7"}],
        "gender": "female",
    }
    subject = SubjectRef("urn:uuid:3d3d63e8-17e8-4f0c-b1a3-b24be51df9af", patient)
    bundle = transaction_bundle(make_report("rejected"), conclusion="x", pdf=PDF, subject=subject)
    assert_valid_r4(bundle, shared_dir)
    (entry,) = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert entry["fullUrl"] == subject.reference
    assert entry["request"]["ifNoneExist"] == "identifier=urn:x|7"
    assert not [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]


def _all_codings(resource: object) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(resource, dict):
        if "system" in resource and "code" in resource:
            found.append((resource["system"], resource["code"]))
        for value in resource.values():
            found += _all_codings(value)
    elif isinstance(resource, list):
        for item in resource:
            found += _all_codings(item)
    return found


CANCER_CODES = {(system, code) for system, code, _, _ in codes.verified_codes("Carcinoma")}


@pytest.mark.parametrize("status", ["ok", "inconclusive", "rejected"])
@pytest.mark.parametrize("top", ["Acne", "Milia", "Keratosis", "Carcinoma"])
def test_no_cancer_code_unless_the_finding_is_carcinoma(
    status: Status, top: str, shared_dir: Path
) -> None:
    probs = {**dict.fromkeys(codes._DISPLAY, 0.02), top: 0.7, "Carcinoma": 0.2}
    if top == "Carcinoma":
        probs = {**dict.fromkeys(codes._DISPLAY, 0.06), "Carcinoma": 0.7}
    report = make_report(status, probs=probs)
    for resource in (
        diagnostic_report(report, conclusion="x", pdf=PDF),
        transaction_bundle(report, conclusion="x", pdf=PDF),
    ):
        assert_valid_r4(resource, shared_dir)
        present = CANCER_CODES & set(_all_codings(resource))
        assert bool(present) == (top == "Carcinoma" and status != "rejected"), present


@pytest.mark.parametrize(
    ("decision", "finding", "fhir_status"),
    [
        ("confirm", "Acne", "final"),
        ("revise", "Eczema", "amended"),
        ("not_assessable", None, "final"),
    ],
)
def test_a_reviewed_report_is_final_with_the_clinicians_codes(
    decision: str, finding: str | None, fhir_status: str, shared_dir: Path
) -> None:
    review = Review(
        reviewer="Dr. Jane Roe",
        reviewer_id="D-1",
        decision=decision,  # type: ignore[arg-type]
        finding=finding,
        reviewed_at="2025-03-02T08:00:00+00:00",
        version=2,
        comment="ok",
    )
    report = replace(make_report(), review=review)
    resource = diagnostic_report(report, conclusion="x", pdf=PDF, report_id="r1")
    assert_valid_r4(resource, shared_dir)
    assert resource["status"] == fhir_status
    assert resource["meta"] == {
        "versionId": "2",
        "lastUpdated": "2025-03-02T08:00:00Z",
        "security": [codes.CLINICIAN_REVIEWED_AI],
    }
    if finding:
        assert resource["conclusionCode"] == [codes.condition_concept(finding)]
    else:
        assert "conclusionCode" not in resource
    assert resource["resultsInterpreter"] == [
        {
            "display": "Dr. Jane Roe",
            "identifier": {"system": f"{codes.PROJECT_SID}/reviewer", "value": "D-1"},
        }
    ]
    (provenance,) = _contained(resource, "Provenance")
    types = [a["type"]["coding"][0]["code"] for a in provenance["agent"]]
    expected = ["verifier", "author"] if decision == "revise" else ["verifier"]
    assert types == [*expected, "DEV", "DEV"]
    assert provenance["activity"]["coding"][0]["code"] == "UPDATE"
    assert provenance["recorded"] == "2025-03-02T08:00:00Z"
    bundle = transaction_bundle(report, conclusion="x", pdf=PDF)
    assert_valid_r4(bundle, shared_dir)


def test_transaction_sends_the_pdf_once_and_creates_devices_conditionally(
    shared_dir: Path,
) -> None:
    bundle = transaction_bundle(make_report(), conclusion="x", pdf=PDF)
    assert_valid_r4(bundle, shared_dir)
    encoded = base64.b64encode(PDF.data).decode()
    assert json.dumps(bundle).count(encoded) == 1, "the PDF travels once (in the Binary)"
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    form = by_type["DiagnosticReport"]["resource"]["presentedForm"][0]
    assert form["url"] == by_type["Binary"]["fullUrl"] and "data" not in form
    assert form["size"] == len(PDF.data)
    devices = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Device"]
    assert len(devices) == 2
    for entry in devices:
        sha = entry["resource"]["identifier"][0]["value"]
        assert entry["request"]["ifNoneExist"] == (
            f"identifier={codes.PROJECT_SID}/model-sha256|{sha}"
        )


def test_a_bundle_local_subject_keeps_identifier_and_name(shared_dir: Path) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.410.1", "value": "MRN-7"}],
        "name": [{"family": "김", "given": ["민준"]}],
    }
    subject = SubjectRef("urn:uuid:8c5a1c7e-4b1f-4b8e-9d59-0a3f5e0d2b11", patient)
    report = diagnostic_report(make_report(), conclusion="x", pdf=PDF, subject=subject)
    assert_valid_r4(report, shared_dir)
    assert report["subject"] == {
        "identifier": {"system": "urn:oid:1.2.410.1", "value": "MRN-7"},
        "display": "김 민준",
    }, "a urn:uuid would dangle in a report that travels alone"
    bundle = transaction_bundle(make_report(), conclusion="x", pdf=PDF, subject=subject)
    patient_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    dr = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert dr["resource"]["subject"]["reference"] == patient_entry["fullUrl"]
