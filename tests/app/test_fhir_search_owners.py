"""FHIR search with authentication on: a client finds only its own cases and patients, an
administrator (`system/*.rs`) every client's; search needs the `.s` scope."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.outputs.fhir import FhirOutput
from service.settings import Settings
from tests.support.clients import write_clients
from tests.support.factories import fake_deps, fake_services, jpeg

BASE = "http://127.0.0.1:8000"
FHIR = {"content-type": "application/fhir+json"}
SCOPES = ["system/DiagnosticReport.cruds", "system/Patient.rs"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    write_clients(
        tmp_path / "clients.json",
        {
            "clinic-a": (SCOPES, "key-a"),
            "clinic-b": (SCOPES, "key-b"),
            "reader": (["system/DiagnosticReport.cr"], "key-r"),
            "auditor": (["system/*.rs"], "key-x"),
        },
    )
    settings = Settings(data_dir=tmp_path, auth="on", rate_limit_per_minute=10_000)
    services = fake_services(tmp_path, fake_deps(outputs=[FhirOutput()]), settings)
    with TestClient(create_app(settings, services=services), base_url=BASE) as test_client:
        yield test_client


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": f"key-{name}"}


def diagnose(client: TestClient[Any], who: str, patient_id: str) -> str:
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "image", "valueAttachment": image},
            {"name": "subject", "resource": {"resourceType": "Patient", "id": patient_id}},
        ],
    }
    answer = client.post(
        "/fhir/DiagnosticReport/$diagnose", content=json.dumps(body), headers={**FHIR, **key(who)}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def ids(client: TestClient[Any], path: str, who: str) -> list[str]:
    answer = client.get(path, headers=key(who))
    assert answer.status_code == 200, answer.text
    return [entry["resource"]["id"] for entry in answer.json().get("entry", [])]


def test_each_client_finds_only_its_own_cases_and_patients(client: TestClient[Any]) -> None:
    mine = diagnose(client, "a", "pa")
    theirs = diagnose(client, "b", "pb")
    assert ids(client, "/fhir/DiagnosticReport", "a") == [mine]
    assert ids(client, "/fhir/DiagnosticReport", "b") == [theirs]
    assert ids(client, "/fhir/DiagnosticReport?patient=pb", "a") == []  # not leaked
    assert ids(client, "/fhir/Patient", "a") == ["pa"]
    assert client.get("/fhir/Patient/pb", headers=key("a")).status_code == 404
    assert client.get("/fhir/Patient/pa", headers=key("a")).status_code == 200
    assert sorted(ids(client, "/fhir/DiagnosticReport", "x")) == sorted([mine, theirs])
    assert sorted(ids(client, "/fhir/Patient", "x")) == ["pa", "pb"]


def test_search_needs_the_search_scope(client: TestClient[Any]) -> None:
    diagnose(client, "a", "pa")
    refused = client.get("/fhir/DiagnosticReport", headers=key("r"))
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient", headers=key("r")).status_code == 403
    anonymous = client.get("/fhir/DiagnosticReport")
    assert anonymous.status_code == 401 and anonymous.json()["resourceType"] == "OperationOutcome"
