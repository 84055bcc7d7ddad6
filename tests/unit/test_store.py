"""SQLite job store: events in order, artifacts, retention, interrupted jobs."""

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


def test_running_jobs_of_a_dead_process_are_marked_failed(tmp_path: Path) -> None:
    first = Store(tmp_path / "s.db")
    first.create_job("j1", "diagnose", {})
    first.set_status("j1", "running")
    first.close()
    second = Store(tmp_path / "s.db")
    job = second.get_job("j1")
    assert job is not None and job.status == "failed" and job.finished


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
