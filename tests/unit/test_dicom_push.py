"""`DicomPusher` against a STOW-RS endpoint on loopback that fails on purpose: bounded retries
with backoff for transient answers, none for a refusal, one audit record per push."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from service.outputs.dicom_push import DicomPusher
from service.security.audit import AuditLog
from service.store import SqliteStore
from tests.support.loopback_http import LoopbackHttp

pytestmark = pytest.mark.anyio


class Stow(BaseHTTPRequestHandler):
    """Answers the queued statuses in turn (then 200), recording each request."""

    statuses: list[int] = []
    requests: list[tuple[str, dict[str, str], bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        with self.lock:
            self.requests.append((self.path, dict(self.headers), body))
            status = self.statuses.pop(0) if self.statuses else 200
        payload = json.dumps({"00081199": {"vr": "SQ", "Value": []}}).encode()
        if status == 202:
            failed = {"00081155": {"vr": "UI", "Value": ["1.2.3"]}}
            payload = json.dumps({"00081198": {"vr": "SQ", "Value": [failed]}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/dicom+json")
        if status == 503:
            self.send_header("retry-after", "0")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "s.db")
    yield store
    await store.close()


def endpoint(server: LoopbackHttp) -> str:
    return server.url.removesuffix("/v1") + "/dicomweb"


async def test_transient_failures_are_retried_then_audited(store: SqliteStore) -> None:
    Stow.statuses, Stow.requests = [503, 500], []
    with LoopbackHttp(Stow) as server:
        pusher = DicomPusher(
            endpoint(server), token="t0k", attempts=4, backoff_s=0.01, audit=AuditLog(store)
        )
        outcome = await pusher.push("1.2.826.0.1.9", [b"one", b"two"])
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("succeeded", 200, 3)
    path, headers, body = Stow.requests[-1]
    assert path == "/dicomweb/studies" and headers["Authorization"] == "Bearer t0k"
    assert headers["Content-Type"].startswith('multipart/related; type="application/dicom"')
    assert body.count(b"Content-Type: application/dicom\r\n\r\n") == 2
    [record] = await store.audit_records()
    assert (record.client, record.action, record.resource_type) == (
        "skinscreen",
        "create",
        "ImagingStudy",
    )
    assert (record.resource_id, record.outcome, record.detail) == (
        "1.2.826.0.1.9",
        "success",
        "stow_200",
    )


async def test_retries_are_bounded_and_refusals_final(store: SqliteStore) -> None:
    Stow.statuses, Stow.requests = [503] * 10, []
    with LoopbackHttp(Stow) as server:
        pusher = DicomPusher(endpoint(server), attempts=3, backoff_s=0.01, audit=AuditLog(store))
        outcome = await pusher.push("1.2.3", [b"x"])
        assert (outcome.status, outcome.attempts, len(Stow.requests)) == ("failed", 3, 3)
        Stow.statuses, Stow.requests = [400, 503], []
        refused = await pusher.push("1.2.3", [b"x"])
        assert (refused.status, refused.http_status, len(Stow.requests)) == ("failed", 400, 1)
        Stow.statuses = [202]
        partial = await pusher.push("1.2.3", [b"x", b"y"])
        assert (partial.status, partial.failed_instances) == ("partial", ("1.2.3",))
    outcomes = [r.outcome for r in await store.audit_records()]
    assert outcomes == ["failed", "failed", "failed"]


async def test_an_unreachable_endpoint_fails_after_the_attempts(store: SqliteStore) -> None:
    with LoopbackHttp(Stow) as server:
        url = endpoint(server)
    pusher = DicomPusher(url, attempts=2, backoff_s=0.01, audit=AuditLog(store))
    outcome = await pusher.push("1.2.3", [b"x"])
    assert (outcome.status, outcome.http_status, outcome.attempts) == ("failed", None, 2)
    assert outcome.error is not None and "network error" in outcome.error
    [record] = await store.audit_records()
    assert record.detail == "stow_unreachable"
