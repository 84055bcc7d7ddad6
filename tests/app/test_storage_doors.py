"""A store that refuses writes (SQLite's own `query_only`, as on a read-only data directory):
every door answers in its format — problem+json 503 on REST, an OperationOutcome on /fhir —
`/ready` is 503 until writes succeed again, and reads keep working."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from service.bootstrap import Services
from service.store import SqliteStore
from tests.app.test_doors import DIAGNOSE, FHIR, client_for, parameters, upload
from tests.support.factories import fake_services


@pytest.fixture
def services(tmp_path: Path) -> Services:
    made = fake_services(tmp_path)
    assert isinstance(made.store, SqliteStore)
    made.store.probe.ttl_s = 0.0
    return made


@pytest.fixture
def client(services: Services) -> Iterator[TestClient[Any]]:
    yield from client_for(services)


def read_only(services: Services, on: bool) -> None:
    assert isinstance(services.store, SqliteStore)
    with services.store.db._lock:
        services.store.db._db.execute(f"PRAGMA query_only={int(on)}")


def test_a_store_that_refuses_writes_is_503_on_every_door(
    client: TestClient[Any], services: Services
) -> None:
    done = client.post("/api/v1/diagnose", **upload())
    assert done.status_code == 200
    read_only(services, True)
    refused = client.post("/api/v1/diagnose", **upload())
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "storage-unavailable" and refused.headers["retry-after"]
    stream = client.post("/api/v1/diagnose-stream", **upload())
    assert stream.status_code == 503 and stream.json()["code"] == "storage-unavailable"
    fhir = client.post(DIAGNOSE, content=parameters(), headers={"content-type": FHIR})
    assert fhir.status_code == 503
    outcome = fhir.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503 and not_ready.json()["store"]["writable"] is False
    job = client.get(f"/api/v1/jobs/{done.json()['case_id']}")
    assert job.status_code == 200  # reads still answer
    read_only(services, False)
    assert client.get("/ready").status_code == 200
    assert client.post("/api/v1/diagnose", **upload()).status_code == 200
