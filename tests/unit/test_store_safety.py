"""What the store leaves on disk: private modes, nothing of an erased case in the database or
its WAL, and photos and artifacts sealed with the encryption key (both backends)."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from service.errors import StoredDataUnreadable
from service.settings import Settings
from service.store import JobStore, Sealer, SealingKeyError, SqliteStore, open_store
from service.store.postgres import PostgresStore
from service.store.sealing import MAGIC, load_key
from tests.support.postgres import PostgresServer
from tests.support.postgres_fixture import postgres  # noqa: F401
from tests.support.stores import BACKENDS

pytestmark = pytest.mark.anyio
MARKER = b"UNIQUE-PHOTO-" + uuid.uuid4().hex.encode()
PHOTO = b"\xff\xd8\xff\xe0" + (MARKER + bytes(997)) * 40  # ~ 40 KB: overflow pages
PDF = b"%PDF-1.7 " + MARKER + b" report"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_with(marker: bytes, directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() and marker in p.read_bytes())


def key_file(tmp_path: Path, key: bytes | None = None, file_mode: int = 0o600) -> Path:
    path = tmp_path / f"key-{uuid.uuid4().hex[:6]}"
    path.write_text((key or os.urandom(32)).hex() + "\n")
    path.chmod(file_mode)
    return path


async def fill(store: JobStore, job_id: str = "j1") -> None:
    await store.create_job(job_id, "diagnose", {}, ({"case_id": job_id}, PHOTO))
    await store.append_event(job_id, "accepted", {"case_id": job_id})
    assert await store.put_artifact(job_id, "pdf", "application/pdf", PDF)


async def test_the_data_directory_and_every_sqlite_file_are_private(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "data" / "nested" / "s.db")
    await fill(store)
    data = tmp_path / "data"
    try:
        made = [p for p in data.rglob("*")]
        assert {p.name for p in made} >= {"nested", "s.db", "s.db-wal", "s.db-shm"}
        assert {p.name: mode(p) for p in made} == {
            p.name: 0o700 if p.is_dir() else 0o600 for p in made
        }
        assert mode(data) == 0o700
    finally:
        await store.close()


async def test_an_older_world_readable_store_is_made_private(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await fill(store)
    await store.close()
    for name in ("s.db", "s.db-wal", "s.db-shm"):
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(0o644)
    reopened = SqliteStore(tmp_path / "s.db")
    try:
        assert await reopened.get_case("j1") is not None
        for path in tmp_path.glob("s.db*"):
            assert mode(path) == 0o600, path.name
    finally:
        await reopened.close()


async def test_an_erased_case_leaves_no_bytes_in_the_database_or_its_wal(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", max_jobs=1)
    try:
        await fill(store, "j1")
        store.db.checkpoint()  # the photo reaches the database file, as at any checkpoint
        await store.append_event("j1", "more", {})  # and the WAL holds pages of the case
        assert files_with(MARKER, tmp_path) == ["s.db"]  # the test can see the photo
        assert await store.delete_job("j1")
        assert files_with(MARKER, tmp_path) == []
        assert (tmp_path / "s.db-wal").stat().st_size == 0  # checkpointed and truncated
        # retention erases as thoroughly: two finished jobs, one kept
        for job_id in ("old", "new"):
            await fill(store, job_id)
            claim = await store.claim("w", 30, 3)
            assert claim is not None and await store.finish(claim.fence, "completed")
        store.db.checkpoint()
        assert await store.prune() == 1
        assert await store.get_case("old") is None and await store.get_case("new") is not None
        marker_of_old = files_with(MARKER, tmp_path)  # "new" still holds the same marker
        assert marker_of_old == ["s.db"]
        assert await store.delete_job("new")
        assert files_with(MARKER, tmp_path) == []
    finally:
        await store.close()


@pytest.fixture(params=BACKENDS)
async def sealed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    """A store of either backend whose photos and artifacts are sealed with a fresh key."""
    key_path = key_file(tmp_path)
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path, encryption_key_file=key_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        dsn = server.create_database(f"t{uuid.uuid4().hex[:12]}")
        settings = Settings(database_url=dsn, encryption_key_file=key_path)
    store = open_store(settings)
    yield store
    await store.close()


async def raw_blobs(store: JobStore) -> list[bytes]:
    """Every stored photo and artifact as the database holds it."""
    sql = "SELECT data FROM cases UNION ALL SELECT content FROM artifacts"
    if isinstance(store, SqliteStore):
        with store.db._lock:
            return [bytes(row[0]) for row in store.db._db.execute(sql)]
    assert isinstance(store, PostgresStore)
    async with await psycopg.AsyncConnection.connect(store.url) as conn:
        cursor = await conn.execute(sql)
        return [bytes(row[0]) for row in await cursor.fetchall()]


async def test_with_a_key_photos_and_artifacts_are_sealed_and_read_back(sealed: JobStore) -> None:
    await fill(sealed)
    blobs = await raw_blobs(sealed)
    assert len(blobs) == 2 and all(b.startswith(MAGIC) and MARKER not in b for b in blobs)
    if isinstance(sealed, SqliteStore):
        assert files_with(MARKER, sealed.db.path.parent) == []  # nor in the file or its WAL
    assert await sealed.get_case("j1") == ({"case_id": "j1"}, PHOTO)
    assert await sealed.get_artifact("j1", "pdf") == ("application/pdf", PDF)
    claim = await sealed.claim("w", 30, 3)
    assert claim is not None and claim.data == PHOTO


async def test_a_sealed_blob_moved_to_another_job_does_not_open(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", sealer=Sealer(os.urandom(32)))
    try:
        await fill(store, "j1")
        await store.create_job("j2", "diagnose", {}, ({"case_id": "j2"}, b"other"))
        with store.db._lock:
            store.db._db.execute(
                "UPDATE cases SET data = (SELECT data FROM cases WHERE job_id='j1') "
                "WHERE job_id='j2'"
            )
        with pytest.raises(StoredDataUnreadable, match="authentication"):
            await store.get_case("j2")
        assert await store.get_case("j1") is not None
    finally:
        await store.close()


async def test_rows_written_before_the_key_still_read(tmp_path: Path) -> None:
    plain = SqliteStore(tmp_path / "s.db")
    await fill(plain, "old")
    await plain.close()
    store = SqliteStore(tmp_path / "s.db", sealer=Sealer(os.urandom(32)))
    try:
        await fill(store, "new")
        assert await store.get_case("old") == ({"case_id": "old"}, PHOTO)
        assert await store.get_artifact("new", "pdf") == ("application/pdf", PDF)
    finally:
        await store.close()


async def test_another_key_or_none_is_refused_at_start_up_and_on_read(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = SqliteStore(tmp_path / "s.db", sealer=Sealer(key))
    await fill(store)
    await store.close()
    with pytest.raises(SealingKeyError, match="another key"):
        SqliteStore(tmp_path / "s.db", sealer=Sealer(os.urandom(32)))
    with pytest.raises(SealingKeyError, match="no encryption key"):
        SqliteStore(tmp_path / "s.db")
    # a row sealed with another key than the newest (start-up checked that one) fails on read
    other = SqliteStore(tmp_path / "s.db", sealer=Sealer(key))
    try:
        other.db.sealer = Sealer(os.urandom(32))
        with pytest.raises(StoredDataUnreadable, match="another key"):
            await other.get_artifact("j1", "pdf")
    finally:
        await other.close()


def test_a_key_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(SealingKeyError, match="chmod 600"):
        load_key(key_file(tmp_path, file_mode=0o644))
    with pytest.raises(SealingKeyError, match="32"):
        load_key(key_file(tmp_path, key=os.urandom(16)))
    bad = key_file(tmp_path)
    bad.write_text("not a key\n")
    with pytest.raises(SealingKeyError, match="hexadecimal"):
        load_key(bad)
    with pytest.raises(SealingKeyError, match="cannot be read"):
        load_key(tmp_path / "absent")
    good = os.urandom(32)
    assert load_key(key_file(tmp_path, key=good, file_mode=0o400)) == good
    with pytest.raises(SealingKeyError, match="chmod 600"):
        open_store(Settings(data_dir=tmp_path, encryption_key_file=key_file(tmp_path, None, 0o640)))
