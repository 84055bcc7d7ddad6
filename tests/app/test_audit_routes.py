"""`GET /fhir/AuditEvent` (search) and `/fhir/AuditEvent/{id}` on a small Litestar app holding
only `AuditController`, over the real SQLite store of `fake_services`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import TestClient

from service.api.audit import AuditController, date_bounds
from service.bootstrap import Services
from service.errors import BadRequest
from service.settings import Settings
from service.store.records import AuditRecord
from tests.support.ci import IN_CI
from tests.support.factories import fake_services
from tests.support.fhir_checks import assert_valid_r4, schema_validator

FHIR = "application/fhir+json"
SCOPES = ["system/AuditEvent.r"]


def at(minute: int) -> str:
    return f"2025-03-01T10:{minute:02d}:00.000+00:00"


RECORDS = [
    AuditRecord(f"r{m}", at(m), client, action, "Job", f"job{m}", outcome, "10.0.0.1", None)
    for m, client, action, outcome in (
        (1, "alpha", "create", "success"),
        (2, "beta", "read", "success"),
        (3, "alpha", "read", "denied"),
        (4, "alpha", "delete", "success"),
        (5, "beta", "token", "failed"),
    )
]  # fmt: skip


@pytest.fixture(scope="session")
def r4_dir() -> Path:
    path = Settings().shared_dir
    if not (path / "fhir" / "r4" / "fhir.schema.json").is_file():
        message = f"FHIR R4 SCHEMA MISSING under {path} — set SKINSCREEN_SHARED_DIR"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path, public_base_url="http://testserver.local")
    made = fake_services(tmp_path, settings=settings, with_worker=False)  # links: from settings

    async def seed() -> None:
        for item in RECORDS:
            await made.store.append_audit(item)

    asyncio.run(seed())
    yield made
    asyncio.run(made.store.close())


@pytest.fixture
def app(services: Services) -> Litestar:
    state = State({"settings": services.settings, "services": services})
    return Litestar(route_handlers=[AuditController], state=state)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Any]]:
    with TestClient(app) as made:
        yield made


def search(client: TestClient[Any], query: str = "") -> dict[str, Any]:
    response = client.get(f"/fhir/AuditEvent{query}", headers={"Accept": FHIR})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR)
    body: dict[str, Any] = response.json()
    return body


def ids(bundle: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def link(bundle: dict[str, Any], relation: str) -> dict[str, list[str]] | None:
    for item in bundle["link"]:
        if item["relation"] == relation:
            return parse_qs(urlsplit(item["url"]).query)
    return None


def test_search_is_a_valid_searchset_newest_first(client: TestClient[Any], r4_dir: Path) -> None:
    bundle = search(client)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    assert "total" not in bundle
    assert ids(bundle) == ["r5", "r4", "r3", "r2", "r1"]
    assert link(bundle, "self") == {"_count": ["50"], "_offset": ["0"]}
    assert link(bundle, "next") is None
    first = bundle["entry"][0]
    assert first["fullUrl"] == "http://testserver.local/fhir/AuditEvent/r5"
    assert first["search"] == {"mode": "match"}
    for entry in bundle["entry"]:
        assert_valid_r4(entry["resource"], r4_dir)
    # The shared validator asks every Bundle entry for `request`, which R4 requires only in
    # batch/transaction Bundles (bdl-3): leave those two findings out for a searchset.
    problems = schema_validator(r4_dir).validate(bundle)
    assert problems == []


def test_pages_follow_next_links(client: TestClient[Any]) -> None:
    page = search(client, "?_count=2&agent=alpha")
    assert ids(page) == ["r4", "r3"]
    following = link(page, "next")
    assert following == {"agent": ["alpha"], "_count": ["2"], "_offset": ["2"]}
    page = search(client, "?agent=alpha&_count=2&_offset=2")
    assert ids(page) == ["r1"] and link(page, "next") is None
    assert search(client, "?_offset=9").get("entry") is None
    capped = search(client, "?_count=100000")
    assert link(capped, "self") == {"_count": ["500"], "_offset": ["0"]}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?date=ge2025-03-01T10:03:00Z", ["r5", "r4", "r3"]),
        ("?date=gt2025-03-01T10:03:00Z", ["r5", "r4"]),
        ("?date=le2025-03-01T10:02:00Z", ["r2", "r1"]),
        ("?date=lt2025-03-01T10:02:00Z", ["r1"]),
        ("?date=ge2025-03-01T10:02:00Z&date=lt2025-03-01T10:04:00Z", ["r3", "r2"]),
        ("?date=2025-03-01T10:02:00Z", ["r2"]),
        ("?date=2025-03-01T12:02:00%2B02:00", ["r2"]),
        ("?date=2025-03-01T12:02:00+02:00", ["r2"]),  # `+` unencoded: a space
        ("?date=2025-03-01", ["r5", "r4", "r3", "r2", "r1"]),
        ("?date=gt2025-03-01", []),
        ("?date=lt2025-03", []),
        ("?date=le2025", ["r5", "r4", "r3", "r2", "r1"]),
        ("?agent=beta", ["r5", "r2"]),
        ("?agent=https://skinscreen.dev/fhir/client|beta", ["r5", "r2"]),
        ("?action=read", ["r3", "r2"]),
        ("?action=D", ["r4"]),
        ("?action=token&agent=beta", ["r5"]),
    ],
)
def test_search_parameters_filter(client: TestClient[Any], query: str, expected: list[str]) -> None:
    assert ids(search(client, query)) == expected


@pytest.mark.parametrize(
    "query",
    ["?date=yesterday", "?date=sa2025-03-01", "?date=2025-13-01", "?action=E", "?_count=0",
     "?_offset=-1", "?_count=many"],
)  # fmt: skip
def test_bad_search_parameters_are_an_operation_outcome(
    client: TestClient[Any], query: str
) -> None:
    response = client.get(f"/fhir/AuditEvent{query}")
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_read_one_event_or_404(client: TestClient[Any], r4_dir: Path) -> None:
    response = client.get("/fhir/AuditEvent/r3", headers={"Accept": FHIR})
    assert response.status_code == 200
    event = response.json()
    assert_valid_r4(event, r4_dir)
    assert (event["id"], event["action"], event["outcome"]) == ("r3", "R", "4")
    assert event["source"]["site"] == "http://testserver.local/fhir"
    missing = client.get(f"/fhir/AuditEvent/{uuid.uuid4().hex}")
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["code"] == "not-found"


def test_only_fhir_json_is_offered(client: TestClient[Any]) -> None:
    for path in ("/fhir/AuditEvent", "/fhir/AuditEvent/r1"):
        response = client.get(path, headers={"Accept": "application/fhir+xml"})
        assert response.status_code == 406
        assert response.json()["resourceType"] == "OperationOutcome"


def test_every_handler_declares_its_scope(app: Litestar) -> None:
    handlers = {h.handler_name: h for route in app.routes for h in route.route_handlers}  # type: ignore[attr-defined]
    for name in ("search_audit_events", "read_audit_event"):
        assert handlers[name].opt.get("scopes") == SCOPES


def test_date_bounds_follow_fhir_precision() -> None:
    assert date_bounds([]) == (None, None)
    assert date_bounds(["eq2025-03-01T10:00:00.5Z"]) == (
        "2025-03-01T10:00:00.500+00:00",
        "2025-03-01T10:00:00.600+00:00",
    )
    assert date_bounds(["2025-12"]) == (
        "2025-12-01T00:00:00.000+00:00",
        "2026-01-01T00:00:00.000+00:00",
    )
    assert date_bounds(["ge2025-03-01T10:00Z", "ge2025-03-01T09:00Z"])[0] == (
        "2025-03-01T10:00:00.000+00:00"
    )
    with pytest.raises(BadRequest):
        date_bounds(["ge2025-02-30"])
