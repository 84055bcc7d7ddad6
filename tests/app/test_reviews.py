"""Clinician review on the in-process app: versions, codes, history, ETags, events, rules."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from litestar.testing import TestClient

from fhir_mappings import codes
from service.app import create_app
from service.bootstrap import Services
from service.outputs.dicom import DicomOutput
from service.outputs.fhir import FhirOutput
from tests.support.factories import (
    FixedScreener,
    classification,
    fake_deps,
    fake_services,
    gate,
    jpeg,
)
from tests.support.fhir_checks import assert_valid_r4

FHIR = "application/fhir+json"
REVIEWER = {"name": "Dr. Jane Roe", "id": "KR-12345"}


@pytest.fixture
def services(tmp_path: Path) -> Services:
    screener = FixedScreener(gate("ok"), classification("Milia", 0.8, Carcinoma=0.12))
    return fake_services(tmp_path, fake_deps(screener, outputs=[FhirOutput(), DicomOutput()]))


@pytest.fixture
def client(services: Services) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(services.settings, services=services)) as client:
        yield client


def diagnose(client: TestClient[Any]) -> str:
    response = client.post(
        "/api/v1/diagnose",
        files={"image": ("p.jpg", jpeg(), "image/jpeg")},
        data={"language": "en", "patient_name": "Kim Minjun"},
    )
    assert response.status_code == 200, response.text
    case_id: str = response.json()["case_id"]
    return case_id


def review(client: TestClient[Any], case_id: str, **body: Any) -> Any:
    return client.post(f"/api/v1/reports/{case_id}/review", json={"reviewer": REVIEWER, **body})


def fhir_report(client: TestClient[Any], case_id: str, **headers: str) -> Any:
    return client.get(f"/fhir/DiagnosticReport/{case_id}", headers={"accept": FHIR, **headers})


def test_before_review_the_report_is_a_preliminary_ai_suspicion(
    client: TestClient[Any], shared_dir: Path
) -> None:
    case_id = diagnose(client)
    body = client.get(f"/api/v1/reports/{case_id}").json()
    assert body["referral"]["level"] == "urgent"
    assert body["referral"]["runner_up"]["label"] == "Carcinoma"
    assert body["version"] == 1 and body["review"] is None
    resource = fhir_report(client, case_id).json()
    assert_valid_r4(resource, shared_dir)
    assert resource["status"] == "preliminary"
    assert resource["meta"]["security"] == [codes.AIAST]
    assert "conclusionCode" not in resource
    cancer = {(s, c) for s, c, _, _ in codes.verified_codes("Carcinoma")}
    assert not any(f'"{c}"' in json.dumps(resource) for _, c in cancer), "no cancer code"


def test_confirm_makes_a_final_version_with_codes_history_pdf_dicom_and_event(
    client: TestClient[Any], services: Services, shared_dir: Path
) -> None:
    case_id = diagnose(client)
    first = fhir_report(client, case_id)
    assert first.headers["etag"] == 'W/"1"'
    old_dicom = pydicom.dcmread(io.BytesIO(client.get(f"/api/v1/reports/{case_id}.dcm").content))

    answer = review(client, case_id, decision="confirm", comment="Classic milia.")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == 2
    assert body["review"]["decision"] == "confirm" and body["review"]["finding"] == "Milia"
    assert body["review"]["reviewer"] == REVIEWER

    current = fhir_report(client, case_id)
    assert current.headers["etag"] == 'W/"2"'
    resource = current.json()
    assert_valid_r4(resource, shared_dir)
    assert resource["status"] == "final"
    assert resource["meta"]["versionId"] == "2"
    assert resource["meta"]["security"] == [codes.CLINICIAN_REVIEWED_AI]
    assert resource["conclusionCode"] == [codes.condition_concept("Milia")]
    assert resource["resultsInterpreter"][0]["display"] == "Dr. Jane Roe"
    # If-None-Match: the current version is not sent again; the old one is
    assert fhir_report(client, case_id, **{"if-none-match": 'W/"2"'}).status_code == 304
    assert fhir_report(client, case_id, **{"if-none-match": 'W/"1"'}).status_code == 200

    history = client.get(f"/fhir/DiagnosticReport/{case_id}/_history", headers={"accept": FHIR})
    assert history.status_code == 200
    bundle = history.json()
    assert_valid_r4(bundle, shared_dir)
    assert bundle["type"] == "history" and bundle["total"] == 2
    versions = [e["resource"]["meta"]["versionId"] for e in bundle["entry"]]
    assert versions == ["2", "1"]
    assert bundle["entry"][1]["resource"]["status"] == "preliminary"
    v1 = client.get(f"/fhir/DiagnosticReport/{case_id}/_history/1", headers={"accept": FHIR})
    assert v1.json()["status"] == "preliminary" and v1.headers["etag"] == 'W/"1"'
    missing = client.get(f"/fhir/DiagnosticReport/{case_id}/_history/9", headers={"accept": FHIR})
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"

    pdf = client.get(f"/api/v1/reports/{case_id}.pdf").content
    assert b"reviewed v2 by Dr. Jane Roe" in pdf
    # search sees the reviewed version
    for status, total in (("final", 1), ("preliminary", 0)):
        found = client.get(
            "/fhir/DiagnosticReport", params={"_id": case_id, "status": status}
        ).json()
        assert found["total"] == total, status
    new_dicom = pydicom.dcmread(io.BytesIO(client.get(f"/api/v1/reports/{case_id}.dcm").content))
    assert new_dicom.SOPInstanceUID != old_dicom.SOPInstanceUID
    assert new_dicom.StudyInstanceUID == old_dicom.StudyInstanceUID
    assert new_dicom.SeriesInstanceUID == old_dicom.SeriesInstanceUID

    events = client.get(f"/api/v1/jobs/{case_id}/events")
    names = [
        line.removeprefix("event: ")
        for line in events.text.splitlines()
        if line.startswith("event: ")
    ]
    assert names[-2:] == ["completed", "report.reviewed"]


def test_revise_is_amended_with_the_clinicians_finding_and_a_re_review_is_kept(
    client: TestClient[Any], shared_dir: Path
) -> None:
    case_id = diagnose(client)
    assert review(client, case_id, decision="revise", finding="Carcinoma").status_code == 200
    resource = fhir_report(client, case_id).json()
    assert resource["status"] == "amended"
    assert resource["conclusionCode"] == [codes.condition_concept("Carcinoma")]
    again = review(client, case_id, decision="not_assessable", comment="Photo too far away.")
    assert again.status_code == 200 and again.json()["version"] == 3
    assert [r["decision"] for r in again.json()["earlier_reviews"]] == ["revise"]
    latest = fhir_report(client, case_id).json()
    assert_valid_r4(latest, shared_dir)
    assert latest["status"] == "final" and "conclusionCode" not in latest
    history = client.get(f"/fhir/DiagnosticReport/{case_id}/_history", headers={"accept": FHIR})
    assert [e["resource"]["status"] for e in history.json()["entry"]] == [
        "final",
        "amended",
        "preliminary",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "revise"}, "finding"),
        ({"decision": "revise", "finding": "Melanoma"}, "finding"),
        ({"decision": "confirm", "finding": "Acne"}, "finding"),
        ({"decision": "approve"}, "decision"),
        ({"decision": "confirm", "reviewer": {"id": "x"}}, "reviewer.name"),
        ({"decision": "confirm", "reviewer": {"name": "x" * 201}}, "reviewer.name"),
        ({"decision": "confirm", "comment": "c" * 2001}, "comment"),
        ({"decision": "confirm", "comment": "bad\x00byte"}, "comment"),
    ],
)
def test_invalid_reviews_are_422_and_change_nothing(
    client: TestClient[Any], body: dict[str, Any], field: str
) -> None:
    case_id = diagnose(client)
    answer = client.post(f"/api/v1/reports/{case_id}/review", json={"reviewer": REVIEWER, **body})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.text
    assert fhir_report(client, case_id).json()["meta"]["versionId"] == "1"


def test_unknown_report_and_bad_json(client: TestClient[Any]) -> None:
    assert review(client, "nope", decision="confirm").status_code == 404
    case_id = diagnose(client)
    bad = client.post(
        f"/api/v1/reports/{case_id}/review",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400


def test_fhir_review_operation(client: TestClient[Any], shared_dir: Path) -> None:
    case_id = diagnose(client)
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "reviewer-name", "valueString": "Dr. Nguyen Van A"},
            {"name": "reviewer-id", "valueString": "VN-77"},
            {"name": "decision", "valueCode": "revise"},
            {"name": "finding", "valueCode": "Eczema"},
            {"name": "comment", "valueString": "Nummular eczema."},
        ],
    }
    answer = client.post(
        f"/fhir/DiagnosticReport/{case_id}/$review",
        content=json.dumps(parameters),
        headers={"content-type": FHIR, "accept": FHIR},
    )
    assert answer.status_code == 200, answer.text
    resource = answer.json()
    assert_valid_r4(resource, shared_dir)
    assert resource["status"] == "amended" and resource["meta"]["versionId"] == "2"
    assert resource["conclusionCode"] == [codes.condition_concept("Eczema")]
    bad = client.post(
        f"/fhir/DiagnosticReport/{case_id}/$review",
        content=json.dumps({"resourceType": "Parameters", "parameter": []}),
        headers={"content-type": FHIR, "accept": FHIR},
    )
    assert bad.status_code == 422 and bad.json()["resourceType"] == "OperationOutcome"
    definition = client.get("/fhir/OperationDefinition/skin-review", headers={"accept": FHIR})
    assert_valid_r4(definition.json(), shared_dir)
    statement = client.get("/fhir/metadata", headers={"accept": FHIR}).json()
    report_entry = next(
        r for r in statement["rest"][0]["resource"] if r["type"] == "DiagnosticReport"
    )
    assert "review" in {op["name"] for op in report_entry["operation"]}
    assert {i["code"] for i in report_entry["interaction"]} >= {"read", "vread", "history-instance"}


def test_two_reviews_of_one_version_at_once_one_wins(
    services: Services, client: TestClient[Any]
) -> None:
    """The version claim is atomic in the store: a second claim of version 2 is refused."""
    import anyio

    from service.intake.review import parse_review

    case_id = diagnose(client)
    given = parse_review({"reviewer": REVIEWER, "decision": "confirm"})

    async def race() -> list[str]:
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await services.reviews.review(case_id, given, None)
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(type(exc).__name__)

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
        return outcomes

    outcomes = anyio.run(race)
    assert sorted(outcomes) == ["Conflict", "ok"]
    assert fhir_report(client, case_id).json()["meta"]["versionId"] == "2"


@pytest.mark.parametrize("door", ["classify", "analyze"])
def test_every_door_carries_the_referral(client: TestClient[Any], door: str) -> None:
    response = client.post(
        f"/api/v1/{door}", files={"image": ("p.jpg", jpeg(), "image/jpeg")}, data={"language": "en"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    referral = body.get("referral") or body["classification"]["referral"]
    assert referral["level"] == "urgent" and referral["runner_up"]["label"] == "Carcinoma"
    if door == "analyze":
        assert "cannot be excluded" in body["summary"]
        assert body["summary"].endswith("a clinician must confirm any finding.")


def test_a_review_cut_off_part_way_can_be_redone(
    services: Services, client: TestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review that dies after claiming its version leaves the earlier version current and
    its claim expires, so the clinician can sign again."""
    import time as clock

    import anyio

    from service.intake.review import parse_review

    case_id = diagnose(client)
    given = parse_review({"reviewer": REVIEWER, "decision": "confirm"})
    desk = services.reviews
    real_outputs = desk.outputs

    class Broken:
        def attachments(self, report: Any, case: Any) -> list[Any]:
            raise OSError("the process died here")

    desk.outputs = [Broken()]  # type: ignore[list-item]
    with pytest.raises(OSError):
        anyio.run(desk.review, case_id, given, None)
    desk.outputs = real_outputs
    assert fhir_report(client, case_id).json()["meta"]["versionId"] == "1"
    assert review(client, case_id, decision="confirm").status_code == 409  # claim still held
    later = clock.time() + 3600
    monkeypatch.setattr(clock, "time", lambda: later)
    assert review(client, case_id, decision="confirm").status_code == 200
    assert fhir_report(client, case_id).json()["meta"]["versionId"] == "2"
