"""The DICOM instance index on both store backends (SQLite, a real PostgreSQL): objects kept as
they are, pending objects found and indexed once, owner and UID filters, erasure cascades; and
QIDO matching over the index rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from service.dicom.catalog import instance_bytes, refresh
from service.dicom.qido import parse_query, search
from service.dicom.stored_object import object_case
from service.dicom.stow import read_header
from service.store import JobStore
from service.store.dicom_records import CASE_KIND, OBJECT_KIND
from tests import dicom_factory as factory
from tests.support.postgres_fixture import postgres  # noqa: F401
from tests.support.stores import BACKENDS, open_backend

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    backend = open_backend(request, tmp_path, retention_hours=72, max_jobs=100)
    yield backend
    await backend.close()


async def keep(store: JobStore, job_id: str, client: str, raw: bytes) -> None:
    header = read_header(raw)
    assert header is not None
    case = object_case(job_id, raw, header)
    await store.store_dicom_object(job_id, {"client": client}, case.record(), raw)


def photo(**patient: str) -> bytes:
    people = {**factory.KOREAN_PATIENT, **patient}
    return factory.vl_photo(Image.new("RGB", (32, 32), (180, 120, 100)), patient=people)


async def test_objects_are_indexed_once_and_found_by_owner_and_uid(store: JobStore) -> None:
    first, second = photo(), photo(PatientID="OTHER-1")
    await keep(store, "job-a", "clinic-a", first)
    await keep(store, "job-b", "clinic-b", second)
    job = await store.get_job("job-a")
    assert job is not None and (job.kind, job.status) == (OBJECT_KIND, "completed")
    assert [e.name for e in await store.events_after("job-a")] == ["completed"]
    assert {p.job_id for p in await store.dicom_pending()} == {"job-a", "job-b"}
    assert await refresh(store) == 2
    assert await store.dicom_pending() == [] and await refresh(store) == 0
    mine = await store.search_dicom("clinic-a", {})
    assert [(e.job_id, e.kind, e.patient_id) for e in mine] == [("job-a", CASE_KIND, "KR-20240001")]
    assert mine[0].attrs["00100010"]["Value"][0]["Alphabetic"] == "홍^길동"
    assert "7FE00010" not in mine[0].attrs
    assert await instance_bytes(store, mine[0]) == first
    everyone = await store.search_dicom(None, {})
    assert len(everyone) == 2
    header = read_header(second)
    assert header is not None
    wanted = {"study_uid": str(header.StudyInstanceUID), "patient_id": "OTHER-1"}
    assert [e.job_id for e in await store.search_dicom(None, wanted)] == ["job-b"]
    assert await store.search_dicom("clinic-a", wanted) == []
    assert await store.delete_job("job-a")
    assert [e.job_id for e in await store.search_dicom(None, {})] == ["job-b"]


async def test_unreadable_objects_are_marked_not_served(store: JobStore) -> None:
    raw = photo()
    await keep(store, "job-x", "c", raw)
    await store.put_artifact("job-x", "dicom", "application/dicom", b"not dicom at all")
    assert await refresh(store) == 2
    assert [e.kind for e in await store.search_dicom(None, {})] == [CASE_KIND]
    assert await store.dicom_pending() == []


async def test_qido_matching_over_index_rows(store: JobStore) -> None:
    await keep(store, "j1", "c", photo(PatientName="Kim^Minjun"))
    await keep(store, "j2", "c", photo(PatientName="Lee^Jisoo"))
    await refresh(store)
    rows = await store.search_dicom("c", {})

    def studies(**params: str) -> list[str]:
        query = parse_query(params.items(), "study", {})
        found = search(rows, "study", query, "https://x/dicomweb")
        return [s["00100010"]["Value"][0]["Alphabetic"] for s in found]

    assert sorted(studies()) == ["Kim^Minjun", "Lee^Jisoo"]
    assert studies(PatientName="kim*") == ["Kim^Minjun"]  # PN wild card, case-insensitive
    assert studies(PatientName="L??^Jisoo") == ["Lee^Jisoo"]
    assert studies(**{"00100010": "Lee^Jisoo"}) == ["Lee^Jisoo"]  # a tag as the key
    assert studies(StudyDate="20250301") and studies(StudyDate="-20250228") == []
    assert len(studies(ModalitiesInStudy="XC,SR")) == 2
    assert len(studies(limit="1")) == 1 and len(studies(offset="1")) == 1
    both = ",".join(str(e.study_uid) for e in rows)
    assert len(studies(StudyInstanceUID=both)) == 2  # a UID list
    query = parse_query([("Unknown", "1"), ("includefield", "all")], "study", {})
    assert query.ignored == ("Unknown",)
