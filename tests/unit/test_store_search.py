"""`JobStore.indexed_jobs` (the read path of FHIR search), on both backends: completed jobs
only, newest first, owner-scoped (a job without an owner is anonymous's), erased with the job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.store import JobStore
from tests.support.postgres_fixture import postgres  # noqa: F401
from tests.support.stores import BACKENDS, open_backend

pytestmark = pytest.mark.anyio
CASE = ({"version": 1}, b"\xff\xd8")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    made = open_backend(request, tmp_path, retention_hours=1, max_jobs=100)
    yield made
    await made.close()


async def _completed(store: JobStore, job_id: str, meta: dict[str, str], index: bytes) -> None:
    await store.create_job(job_id, "fhir", meta, CASE)
    claim = await store.claim("w", 30, 3)
    assert claim is not None and claim.job.id == job_id
    assert await store.put_artifact(job_id, "fhir-index", "application/json", index, claim.fence)
    assert await store.end(claim.fence, "completed", "completed", {}) is not None


async def test_completed_indexed_jobs_newest_first_and_owner_scoped(store: JobStore) -> None:
    await _completed(store, "a", {"client": "alice"}, b'{"n":1}')
    await _completed(store, "b", {"client": "bob"}, b'{"n":2}')
    await _completed(store, "c", {}, b'{"n":3}')  # stored before owners existed
    await _completed(store, "d", {"client": "alice"}, b'{"n":4}')
    await store.create_job("e", "fhir", {"client": "alice"}, CASE)  # queued: not searchable
    await store.put_artifact("e", "fhir-index", "application/json", b'{"n":5}')
    every = await store.indexed_jobs("fhir-index")
    assert [(job.id, content) for job, content in every] == [
        ("d", b'{"n":4}'), ("c", b'{"n":3}'), ("b", b'{"n":2}'), ("a", b'{"n":1}')
    ]  # fmt: skip
    assert [job.id for job, _ in await store.indexed_jobs("fhir-index", "alice")] == ["d", "a"]
    assert [job.id for job, _ in await store.indexed_jobs("fhir-index", "anonymous")] == ["c"]
    assert await store.indexed_jobs("other-kind") == []
    assert await store.delete_job("d")
    assert [job.id for job, _ in await store.indexed_jobs("fhir-index", "alice")] == ["a"]
