"""SQLite job store: events in order, artifacts, cases, retention, heartbeats of shared jobs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from service.store import Store


def test_events_and_artifacts_roundtrip(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.create_job("j1", "diagnose", {"language": "ko"})
    assert [store.append_event("j1", n, {"i": i}) for i, n in enumerate("abc")] == [1, 2, 3]
    assert [e.name for e in store.events_after("j1", 1)] == ["b", "c"]
    store.put_artifact("j1", "pdf", "application/pdf", b"%PDF-1.7")
    assert store.get_artifact("j1", "pdf") == ("application/pdf", b"%PDF-1.7")
    assert store.get_artifact("j1", "dicom") is None
    store.update_meta("j1", outcome="x")
    job = store.get_job("j1")
    assert job is not None and job.meta == {"language": "ko", "outcome": "x"}


def test_opening_a_shared_store_leaves_running_jobs_alone(tmp_path: Path) -> None:
    first = Store(tmp_path / "s.db")
    first.create_job("j1", "diagnose", {})
    first.set_status("j1", "running")
    second = Store(tmp_path / "s.db")  # another process opens the same store
    job = second.get_job("j1")
    assert job is not None and job.status == "running" and not job.finished
    assert second.is_alive("j1", dt.timedelta(minutes=1))
    assert second.stale_jobs(dt.timedelta(minutes=1)) == []


def test_running_jobs_of_a_dead_process_go_stale(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    for job_id in ("dead", "alive", "done"):
        store.create_job(job_id, "diagnose", {})
        store.set_status(job_id, "running")
    store.set_status("done", "completed")
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat(timespec="milliseconds")
    store._db.execute("UPDATE jobs SET heartbeat=?, updated=?", (old, old))
    store.heartbeat(["alive"])  # its process is still running it
    assert store.stale_jobs(dt.timedelta(minutes=1)) == ["dead"]
    assert not store.is_alive("dead", dt.timedelta(minutes=1))
    assert store.is_alive("alive", dt.timedelta(minutes=1))
    assert not store.is_alive("done", dt.timedelta(hours=1))  # finished jobs are not alive
    store.heartbeat([])  # nothing to refresh


def test_a_job_is_stored_with_its_case(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    record = {"version": 1, "case_id": "j1", "history": "자가 보고"}
    store.create_job("j1", "diagnose", {}, (record, b"\xff\xd8bytes"))
    assert store.get_case("j1") == (record, b"\xff\xd8bytes")
    store.create_job("j2", "diagnose", {})
    assert store.get_case("j2") is None and store.get_case("absent") is None


def test_prune_by_count_and_age(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", retention_hours=1, max_jobs=2)
    for i in range(4):
        store.create_job(f"j{i}", "diagnose", {})
        store.set_status(f"j{i}", "completed")
    store.create_job("live", "diagnose", {})
    store.set_status("live", "running")
    assert store.prune() == 2
    remaining = {j for j in ("j0", "j1", "j2", "j3", "live") if store.get_job(j)}
    assert remaining == {"j2", "j3", "live"}
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    store._db.execute("UPDATE jobs SET created=?", (old,))
    store.prune()
    assert store.get_job("j3") is None and store.get_job("live") is not None
