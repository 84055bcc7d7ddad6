"""The audit trail: the store contract on both backends (SQLite and a real PostgreSQL), the
`AuditLog` that keeps free text out, and the R4 `AuditEvent` mapping (official schema)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from fhir_mappings.audit_event import audit_event
from service.security.audit import AuditLog, audit_record, safe_code
from service.settings import Settings
from service.store import JobStore, SqliteStore
from service.store.postgres import PostgresStore
from service.store.records import AuditRecord
from tests.support.ci import IN_CI
from tests.support.fhir_checks import assert_valid_r4
from tests.support.postgres import PostgresServer
from tests.support.postgres_fixture import postgres  # noqa: F401
from tests.support.stores import BACKENDS, open_backend

pytestmark = pytest.mark.anyio
CASE = ({"version": 1, "case_id": "x"}, b"\xff\xd8bytes")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    made = open_backend(request, tmp_path, retention_hours=1, max_jobs=0)
    yield made
    await made.close()


@pytest.fixture(scope="session")
def r4_dir() -> Path:
    """The folder holding fhir/r4/fhir.schema.json (../shared); skips loudly when absent."""
    path = Settings().shared_dir
    if not (path / "fhir" / "r4" / "fhir.schema.json").is_file():
        message = f"FHIR R4 SCHEMA MISSING under {path} — set SKINSCREEN_SHARED_DIR"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def record(at: str, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "at": at,
        "client": "reader",
        "action": "read",
        "resource_type": "DiagnosticReport",
        "resource_id": "job1",
        "outcome": "success",
        "source": "10.0.0.7",
        "detail": None,
        **fields,
    }
    return AuditRecord(**values)


def at(minute: int) -> str:
    return f"2025-03-01T10:{minute:02d}:00.000+00:00"


async def test_records_are_appended_read_back_and_searched_newest_first(store: JobStore) -> None:
    first = record(at(1), client="a", action="create", detail="queued")
    second = record(at(2), client="b", resource_id=None, source=None)
    third = record(at(3), client="a", outcome="denied", detail="insufficient_scope")
    for item in (second, first, third):  # not in time order
        await store.append_audit(item)
    assert await store.get_audit(first.id) == first
    assert await store.get_audit(second.id) == second  # the None fields too
    assert await store.get_audit("absent") is None
    assert await store.audit_records() == [third, second, first]
    assert await store.audit_records(client="a") == [third, first]
    assert await store.audit_records(action="create") == [first]
    assert await store.audit_records(client="a", action="read") == [third]
    assert await store.audit_records(since=at(2)) == [third, second]  # since: inclusive
    assert await store.audit_records(until=at(3)) == [second, first]  # until: exclusive
    assert await store.audit_records(since=at(2), until=at(3)) == [second]
    assert await store.audit_records(limit=2) == [third, second]
    assert await store.audit_records(limit=2, offset=2) == [first]
    assert await store.audit_records(offset=3) == []


async def test_instants_in_other_zones_compare_as_time(store: JobStore) -> None:
    item = record("2025-03-01T12:00:00.000+02:00")  # 10:00 UTC
    await store.append_audit(item)
    stored = await store.get_audit(item.id)
    assert stored is not None and stored.at == "2025-03-01T10:00:00.000+00:00"
    assert await store.audit_records(since="2025-03-01T09:59:59Z") == [stored]
    assert await store.audit_records(since="2025-03-01T10:00:00.001+00:00") == []
    assert await store.audit_records(until="2025-03-01T11:00:00+01:00") == []


async def test_records_outlive_the_cases_they_describe(store: JobStore) -> None:
    log = AuditLog(store)
    for job_id in ("j1", "j2"):
        await store.create_job(job_id, "diagnose", {}, CASE)
        await log.record(client="c", action="create", resource_type="Job", resource_id=job_id)
        claim = await store.claim("w", 30, 3)
        assert claim is not None
        await store.finish(claim.fence, "completed")
        await asyncio.sleep(0.01)
    await store.create_job("j3", "diagnose", {}, CASE)
    assert await store.prune() == 2  # max_jobs=0: every finished job goes
    assert await store.delete_job("j3")
    assert await store.get_job("j1") is None and await store.get_job("j3") is None
    await log.record(client="c", action="delete", resource_type="Job", resource_id="j3")
    kept = {(r.action, r.resource_id) for r in await log.search()}
    assert kept == {("create", "j1"), ("create", "j2"), ("delete", "j3")}


async def test_the_trail_is_append_only_in_the_database(store: JobStore) -> None:
    item = record(at(1))
    await store.append_audit(item)
    if isinstance(store, SqliteStore):
        for sql in ("UPDATE audit SET client='x'", "DELETE FROM audit"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                store.db._db.execute(sql)
    else:
        assert isinstance(store, PostgresStore)
        for sql in ("UPDATE audit SET client='x'", "DELETE FROM audit", "TRUNCATE audit"):
            with pytest.raises(Exception, match="append-only"):
                await store._fetch(sql + " RETURNING id" if "TRUNCATE" not in sql else sql)
    assert await store.get_audit(item.id) == item


async def test_the_log_stamps_and_keeps_free_text_out(store: JobStore) -> None:
    log = AuditLog(store)
    await log.record(
        client="reader-1",
        action="read",
        resource_type="DiagnosticReport",
        resource_id="6f1c0e",
        source="2001:db8::1",
        detail="not_found",
        outcome="not-found",
    )
    await log.record(
        client="Dr Jane Roe",  # free text everywhere: none of it may be kept
        action="Looked at the melanoma of John Smith",
        resource_type="a patient named John",
        resource_id="John Smith 1970-01-01",
        outcome="whatever",
        source="John's laptop",
        detail="patient John Smith, DOB 1970-01-01, melanoma",
    )
    kept = {r.action: r for r in await log.search()}
    good, bad = kept["read"], kept["other"]
    assert (good.client, good.action, good.resource_type, good.resource_id) == (
        "reader-1",
        "read",
        "DiagnosticReport",
        "6f1c0e",
    )
    assert (good.outcome, good.source, good.detail) == ("not-found", "2001:db8::1", "not_found")
    assert len(good.id) == 32 and good.at.endswith("+00:00") and len(good.at) == 29
    assert (bad.client, bad.action, bad.resource_type, bad.resource_id) == (
        "unknown",
        "other",
        "Other",
        None,
    )
    assert (bad.outcome, bad.source, bad.detail) == ("failed", None, "other")
    assert "John" not in repr(bad)
    assert await log.get(good.id) == good


def test_safe_code_accepts_only_short_machine_codes() -> None:
    assert safe_code("insufficient_scope") == "insufficient_scope"
    assert safe_code("fhir:read.v2-x") == "fhir:read.v2-x"
    for text in ("", "a" * 41, "Insufficient", "two words", "é", "x\n", None, 3):
        assert safe_code(text) == "other"


class _BrokenStore:
    async def append_audit(self, record: AuditRecord) -> None:
        raise OSError("disk full at /var/lib/patient-John")


async def test_a_failed_write_never_reaches_the_request() -> None:
    log = AuditLog(_BrokenStore())  # type: ignore[arg-type]
    with capture_logs() as logs:
        await log.record(client="c", action="read", resource_type="Binary", resource_id="b1")
    assert logs == [{"event": "audit.write_failed", "error": "OSError", "log_level": "warning"}]


def test_a_search_page_is_bounded() -> None:
    seen: dict[str, Any] = {}

    class Spy:
        async def audit_records(self, **query: Any) -> list[AuditRecord]:
            seen.update(query)
            return []

    asyncio.run(AuditLog(Spy()).search(limit=10**6, offset=-5))  # type: ignore[arg-type]
    assert (seen["limit"], seen["offset"]) == (1000, 0)


ACTIONS = ("create", "read", "update", "delete", "execute", "token", "login", "search", "other")
OUTCOMES = {"success": "0", "denied": "4", "not-found": "4", "failed": "8"}
LETTERS = {"create": "C", "read": "R", "update": "U", "delete": "D"}


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
@pytest.mark.parametrize("action", ACTIONS)
def test_every_record_is_a_valid_r4_audit_event(action: str, outcome: str, r4_dir: Path) -> None:
    item = audit_record(
        client="svc-1",
        action=action,
        resource_type="DiagnosticReport",
        resource_id="abc123",
        outcome=outcome,
        source="192.0.2.10",
        detail=None if outcome == "success" else "insufficient_scope",
    )
    event = audit_event(item, "https://ss.example/fhir")
    assert_valid_r4(event, r4_dir)
    assert event["recorded"] == item.at and event["agent"][0]["requestor"] is True  # required
    assert event["type"]["code"] == "rest" and event["outcome"] == OUTCOMES[outcome]
    assert event["action"] == LETTERS.get(action, "E")
    assert event["agent"][0]["who"]["identifier"] == {
        "system": "https://skinscreen.dev/fhir/client",
        "value": "svc-1",
    }
    assert event["agent"][0]["network"] == {"address": "192.0.2.10", "type": "2"}
    assert event["entity"][0]["what"] == {"reference": "DiagnosticReport/abc123"}
    assert event["source"]["observer"] == {"display": "skinscreen"}
    subtype = event["subtype"][0]
    if action in ("token", "login", "other"):
        assert subtype["system"] == "https://skinscreen.dev/fhir/CodeSystem/audit-action"
    else:
        assert subtype["system"] == "http://hl7.org/fhir/restful-interaction"
        assert subtype["code"] == {"execute": "operation"}.get(action, action)


@pytest.mark.parametrize("resource_type", ["Job", "Instance", "Token"])
def test_server_objects_are_named_by_identifier(resource_type: str, r4_dir: Path) -> None:
    item = audit_record(client="c", action="token", resource_type=resource_type, resource_id="x1")
    event = audit_event(item)
    assert_valid_r4(event, r4_dir)
    assert event["entity"][0]["what"]["identifier"] == {
        "system": f"https://skinscreen.dev/fhir/sid/{resource_type.lower()}",
        "value": "x1",
    }
    assert event["entity"][0]["type"]["code"] == "2"  # audit-entity-type: System Object


def test_a_search_without_resource_or_address_is_valid(r4_dir: Path) -> None:
    item = audit_record(client="c", action="read", resource_type="AuditEvent", outcome="denied")
    event = audit_event(item)
    assert_valid_r4(event, r4_dir)
    assert "entity" not in event and "network" not in event["agent"][0]
    assert event["subtype"][0]["code"] == "search" and event["action"] == "E"


async def test_an_older_store_gains_the_trail(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.store import postgres_schema

    server: PostgresServer = request.getfixturevalue("postgres")

    old = sqlite3.connect(tmp_path / "old.db")
    old.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, "
                "created TEXT NOT NULL, updated TEXT NOT NULL, meta TEXT NOT NULL)")  # fmt: skip
    old.commit()
    old.close()
    dsn = server.create_database(f"t{uuid.uuid4().hex[:12]}")
    with monkeypatch.context() as patch:  # a database at schema version 1, with a job
        patch.setattr(postgres_schema, "MIGRATIONS", postgres_schema.MIGRATIONS[:1])
        first = PostgresStore(dsn)
        await first.create_job("j1", "diagnose", {}, CASE)
        await first.close()
    for made in (SqliteStore(tmp_path / "old.db"), PostgresStore(dsn)):
        item = record(at(1))
        await made.append_audit(item)
        assert await made.audit_records() == [item]
        if isinstance(made, PostgresStore):
            assert await made.get_job("j1") is not None
            latest = postgres_schema.MIGRATIONS[-1][0]
            versions = await made._fetch("SELECT MAX(version) FROM schema_migrations")
            assert versions[0][0] == latest  # every later migration applied
        await made.close()


def test_the_audited_entity_keeps_a_whole_dicom_uid() -> None:
    from service.api.audit_trail import _case_id

    uid = "1.2.826.0.1.3680043.8.498.12345"
    assert _case_id({"path_params": {"instance": uid}}, {}) == uid
    assert _case_id({"path_params": {"name": "abc123.pdf"}}, {}) == "abc123"
    assert _case_id({"path_params": {"binary_id": "abc123.photo"}}, {}) == "abc123"
