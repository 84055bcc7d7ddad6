"""Storage faults on a real, small filesystem, through the live server (uvicorn in a subprocess,
its data directory on a tmpfs): a full disk answers 507 at once on every door (no hang, no
500), a case running when the disk fills answers its blocking request, `/ready` says 503 while
writes fail and 200 once space returns; what the server writes in its data directory is
private; a bad encryption key stops the start with a clear message. (A read-only store is
`tests/unit/test_storage_faults.py`: a tmpfs with open files cannot be remounted read-only.)"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_fhir_http import parameters
from tests.support.gated_llm import GatedLlm
from tests.support.live_server import LiveServer, start_server, stop_server
from tests.support.small_disk import SmallDisk, small_disk

PROBLEM = "application/problem+json"


def diagnose(server: LiveServer, photo: bytes, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/diagnose",
        files={"image": ("a.jpg", photo, "image/jpeg")},
        data={"language": "en"},
        timeout=timeout,
    )


def ready(server: LiveServer) -> httpx.Response:
    return httpx.get(f"{server.url}/ready", timeout=10)


def wait_ready(server: LiveServer, want: int, within_s: float = 15) -> httpx.Response:
    deadline = time.monotonic() + within_s
    while True:
        answer = ready(server)
        if answer.status_code == want or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def env(disk: SmallDisk, llm: GatedLlm) -> dict[str, str]:
    return {
        "SKINSCREEN_DATA_DIR": str(disk.root / "data"),
        "SKINSCREEN_NARRATOR": "openai",
        "SKINSCREEN_OPENAI_BASE_URL": llm.url,
        "SKINSCREEN_OPENAI_RETRIES": "0",
        "SKINSCREEN_OPENAI_SEND_IMAGE": "false",
        "SKINSCREEN_REPORT_HEATMAP": "false",
        "SKINSCREEN_JOB_LEASE_S": "3",
    }


def test_a_full_disk_is_507_ready_follows_it_and_the_service_recovers(
    tmp_path: Path, skin_jpeg: bytes
) -> None:
    with small_disk(tmp_path / "disk") as disk, GatedLlm(hold_s=60) as llm:
        server = start_server(tmp_path, env(disk, llm))
        try:
            # a case that is running when the disk fills: its blocking request is answered
            answers: dict[str, Any] = {}
            running = threading.Thread(
                target=lambda: answers.setdefault("r", diagnose(server, skin_jpeg, 60))
            )
            running.start()
            assert llm.waiting.wait(30), "the case never reached the narrator"
            filled = disk.fill()
            assert filled > 0 and disk.free_bytes() == 0
            llm.release.set()
            running.join(timeout=45)  # hang guard
            assert not running.is_alive(), "the blocking request hung on a full disk"
            first = answers["r"]
            assert first.status_code in (503, 507), first.text
            assert first.headers["content-type"].startswith(PROBLEM)
            assert '"worker.storage_fault"' in server.logs()  # the worker ended it

            # a new submission on the full disk: 507 problem+json at once
            started = time.monotonic()
            refused = diagnose(server, skin_jpeg)
            assert time.monotonic() - started < 20  # hang guard
            assert refused.status_code == 507, refused.text
            assert refused.headers["content-type"].startswith(PROBLEM)
            body = refused.json()
            assert body["code"] == "insufficient-storage" and "Traceback" not in refused.text
            assert int(refused.headers["retry-after"]) > 0
            fhir = httpx.post(
                f"{server.url}/fhir/DiagnosticReport/$diagnose",
                content=json.dumps(parameters(skin_jpeg)).encode(),
                headers={"content-type": "application/fhir+json"},
                timeout=30,
            )
            assert fhir.status_code == 507, fhir.text
            outcome = fhir.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["code"] == "no-store"
            not_ready = wait_ready(server, 503)
            assert not_ready.status_code == 503
            assert not_ready.json()["store"] == {"backend": "sqlite", "ok": True, "writable": False}

            # space returns: ready again, and a case runs to its report
            disk.free()
            assert wait_ready(server, 200).status_code == 200
            done = diagnose(server, skin_jpeg)
            assert done.status_code == 200, done.text
            assert done.json()["report"]["narrator"]["name"]
            assert_private(disk.root / "data")

            assert "unhandled_error" not in server.logs()
        finally:
            stop_server(server)


def assert_private(data: Path) -> None:
    """Every directory the server made in its data directory is 0700, every file 0600."""
    made = {p.relative_to(data).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in [data, *data.rglob("*")]}  # fmt: skip
    assert {"skinscreen.db", "skinscreen.db-wal", "skinscreen.db-shm"} <= set(made)
    assert "signing-key.pem" in made
    assert made == {name: 0o700 if (data / name).is_dir() else 0o600 for name in made}, made


def test_a_bad_key_stops_the_start_with_a_clear_message(tmp_path: Path, skin_jpeg: bytes) -> None:
    key = tmp_path / "key.hex"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o644)
    with pytest.raises(RuntimeError, match="chmod 600"):
        start_server(tmp_path, {"SKINSCREEN_ENCRYPTION_KEY_FILE": str(key)}, name="bad-key")
    key.chmod(0o600)
    sealed = start_server(tmp_path, {"SKINSCREEN_ENCRYPTION_KEY_FILE": str(key)}, name="key")
    try:
        assert diagnose(sealed, skin_jpeg).status_code == 200
    finally:
        stop_server(sealed)
    assert skin_jpeg[100:164] not in (tmp_path / "data" / "skinscreen.db").read_bytes()
    with pytest.raises(RuntimeError, match="no encryption key is configured"):
        start_server(tmp_path, name="no-key")
