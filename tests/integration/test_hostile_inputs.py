"""The bad-input corpus (`hostile_corpus.py`) against live servers, and half-sent bodies.

Every probe goes over a real socket to uvicorn in a subprocess — with auth on and an API key,
with auth on and no credential, and with auth off (the session's default server). Whatever the
input: no status ≥ 500, an answer within `DEADLINE_S`, every error as RFC 9457 problem+json
(`status` matching) or, under `/fhir`, an OperationOutcome, and no `unhandled_error` in the
server log. Documented exceptions, as in `test_fuzz.py`: `/auth/token` answers RFC 6749 JSON,
STOW-RS answers 409 with a PS3.18 store response, and the event streams answer 200 SSE.

`schemathesis` (`test_fuzz.py`) generates from the OpenAPI document; this corpus holds what a
schema cannot describe: raw multipart framing, DICOM headers, FHIR JSON shapes, raw headers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.hostile_corpus import JOB, Answer, Probe, corpus, multipart, send
from tests.support.clients import write_clients
from tests.support.live_server import LiveServer, start_server, stop_server

API_KEY = "sk_hostile_" + "0123456789abcdef" * 2
KEY = ((b"X-API-Key", API_KEY.encode()),)
DEADLINE_S = 10.0  # one request taking this long is a hang
IDLE_S = 1.5  # the hostile server's body idle timeout
TOTAL_S = 4.0  # … and whole-body timeout
OPEN_PREFIXES = ("/health", "/ready", "/fhir/metadata", "/schema", "/auth/", "/.well-known")


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Auth on, one all-scopes client with `API_KEY`, no rate limit, short body timeouts."""
    tmp = tmp_path_factory.mktemp("hostile")
    clients = write_clients(tmp / "clients.json", {"hostile": (["system/*.cruds"], API_KEY)})
    env = {
        "SKINSCREEN_AUTH": "on",
        "SKINSCREEN_CLIENTS_FILE": str(clients),
        "SKINSCREEN_RATE_LIMIT_PER_MINUTE": "0",
        "SKINSCREEN_BODY_IDLE_TIMEOUT_S": str(IDLE_S),
        "SKINSCREEN_BODY_TIMEOUT_S": str(TOTAL_S),
    }
    server = start_server(tmp, env, name="hostile-server")
    yield server
    stop_server(server)


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def finished_job(server: LiveServer, headers: dict[str, str]) -> str:
    """A finished diagnose job of the caller (for the event-stream and job probes)."""
    files = {"image": ("p.jpg", _jpeg(), "image/jpeg")}
    answer = httpx.post(f"{server.url}/api/v1/diagnose", files=files, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    return str(answer.headers["x-job-id"])


def _jpeg() -> bytes:
    from tests.integration.hostile_corpus import jpeg

    return jpeg()


def format_problem(probe: Probe, answer: Answer) -> str | None:
    """Why this answer breaks the invariants, or None."""
    if answer.status == 0:
        return f"no answer ({answer.error}) after {answer.elapsed_s:.1f} s"
    if answer.status >= 500:
        return f"{answer.status}: {answer.body[:200]!r}"
    if answer.elapsed_s >= DEADLINE_S:
        return f"took {answer.elapsed_s:.1f} s"
    if probe.expect is not None and answer.status not in probe.expect and answer.status != 401:
        return f"status {answer.status}, expected one of {sorted(probe.expect)[:5]}"
    if answer.status < 400:
        return None
    media_type = answer.headers.get("content-type", "").split(";")[0].strip().lower()
    path = probe.target.split("?")[0]
    if path.startswith("/auth/token") and media_type == "application/json":
        return None if "error" in answer.json() else "an OAuth error without `error`"
    if path.startswith("/dicomweb/studies") and answer.status == 409:
        return None if media_type == "application/dicom+json" else f"409 as {media_type}"
    try:
        body = answer.json()
    except ValueError:
        return f"{answer.status} body is not JSON: {answer.body[:120]!r}"
    if path == "/fhir" or path.startswith("/fhir/"):
        if media_type != "application/fhir+json" or body.get("resourceType") != "OperationOutcome":
            return f"{answer.status} under /fhir as {media_type} {str(body)[:120]}"
        return None if body.get("issue") else "an OperationOutcome without issues"
    if media_type != "application/problem+json" or body.get("status") != answer.status:
        return f"{answer.status} as {media_type} {str(body)[:120]}"
    return None


def run_corpus(
    server: LiveServer, credentials: tuple[tuple[bytes, bytes], ...], job_id: str
) -> tuple[int, list[str], list[tuple[Probe, Answer]]]:
    """Send every probe; (probes sent, broken invariants, answers)."""
    probes = corpus()
    offset = len(server.logs())
    failures, answers = [], []
    for probe in probes:
        if JOB in probe.target:
            probe = Probe(**{**probe.__dict__, "target": probe.target.replace(JOB, job_id)})
        answer = send(port_of(server), probe, credentials, DEADLINE_S)
        answers.append((probe, answer))
        if (problem := format_problem(probe, answer)) is not None:
            failures.append(f"{probe.label}: {problem}")
    crashes = [line for line in server.logs()[offset:].splitlines() if "unhandled_error" in line]
    failures += [f"server log: {line[:300]}" for line in crashes[:10]]
    return len(probes), failures, answers


def test_the_corpus_covers_every_door() -> None:
    probes = corpus()
    doors = {probe.door for probe in probes}
    assert doors == {"upload", "raw", "fhir", "stow", "path", "header", "auth"}
    assert len(probes) >= 120
    assert len({probe.label + str(probe.headers) for probe in probes}) == len(probes)
    print(f"\nhostile corpus: {len(probes)} probes")


@pytest.mark.timeout(180)
def test_the_corpus_with_auth_on_and_a_key(hostile_server: LiveServer) -> None:
    job_id = finished_job(hostile_server, {"X-API-Key": API_KEY})
    started = time.monotonic()
    sent, failures, answers = run_corpus(hostile_server, KEY, job_id)
    print(f"\n{sent} probes (auth on, key) in {time.monotonic() - started:.1f} s")
    assert not failures, "\n".join(failures)
    assert any(answer.status == 200 for _, answer in answers)  # the valid ones went through
    assert not any(answer.status == 401 for probe, answer in answers if probe.door != "auth")


@pytest.mark.timeout(180)
def test_the_corpus_with_auth_on_and_no_credential(hostile_server: LiveServer) -> None:
    _, failures, answers = run_corpus(hostile_server, (), "no-such-job")
    assert not failures, "\n".join(failures)
    for probe, answer in answers:
        if not probe.target.startswith(OPEN_PREFIXES):
            assert answer.status in (401, 403, 404, 405), f"{probe.label}: {answer.status}"


@pytest.mark.timeout(180)
def test_the_corpus_with_auth_off(live_server: LiveServer) -> None:
    job_id = finished_job(live_server, {})
    started = time.monotonic()
    sent, failures, _ = run_corpus(live_server, (), job_id)
    print(f"\n{sent} probes (auth off) in {time.monotonic() - started:.1f} s")
    assert not failures, "\n".join(failures)


# --- half-sent bodies ----------------------------------------------------------------------------


def stalled_request(
    server: LiveServer, path: str, content_type: bytes, body: bytes
) -> socket.socket:
    """Headers announcing twice the body, then half of it; the caller keeps the socket."""
    port = port_of(server)
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Length: {2 * len(body)}\r\n"
        ).encode()
        + b"Content-Type: "
        + content_type
        + b"\r\n\r\n"
    )
    sock.sendall(head + body)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (or `limit_s` passes)."""
    started, received = time.monotonic(), b""
    sock.settimeout(limit_s)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # closed while our unread half-body was still in its buffer
    except TimeoutError:
        pytest.fail(f"the server held a stalled request open for {limit_s} s")
    finally:
        sock.close()
    return received, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "content_type", "outcome"),
    [
        ("/api/v1/classify", b"multipart/form-data; boundary=stall", b"application/problem+json"),
        ("/api/v1/classify", b"image/jpeg", b"application/problem+json"),
        ("/fhir/DiagnosticReport/$diagnose", b"application/fhir+json", b"application/fhir+json"),
        (
            "/dicomweb/studies",
            b'multipart/related; type="application/dicom"; boundary=s',
            b"application/problem+json",
        ),
    ],
)
def test_a_stalled_body_is_dropped_and_the_server_stays_responsive(
    hostile_server: LiveServer, path: str, content_type: bytes, outcome: bytes | None
) -> None:
    body = multipart(b"stall", (b"image", _jpeg(), b"p.jpg"))
    sock = stalled_request(hostile_server, path, content_type, body)
    health: list[float] = []

    def probe_health() -> None:
        for _ in range(3):
            started = time.monotonic()
            assert httpx.get(f"{hostile_server.url}/health", timeout=5).status_code == 200
            health.append(time.monotonic() - started)
            time.sleep(0.2)

    checker = threading.Thread(target=probe_health)
    checker.start()
    received, waited = read_until_closed(sock, limit_s=IDLE_S + 10)
    checker.join(timeout=10)
    assert len(health) == 3 and max(health) < 5  # /health answered while the body stalled
    assert waited < IDLE_S + 5, f"dropped after {waited:.1f} s"
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"connection: close" in received.lower()
    if outcome is not None:
        assert b"content-type: " + outcome in received.lower()


def test_a_trickled_body_meets_the_whole_body_deadline(hostile_server: LiveServer) -> None:
    """One byte every 0.5 s never trips the idle timeout; the total one ends it."""
    body = multipart(b"stall", (b"image", _jpeg(), b"p.jpg"))
    sock = stalled_request(hostile_server, "/api/v1/classify", b"image/jpeg", body[:200])
    started, answer = time.monotonic(), b""
    sock.settimeout(0.5)
    while not answer and time.monotonic() - started < TOTAL_S + 8:
        try:
            answer += sock.recv(65536)  # waits 0.5 s: the pace of the trickle
        except TimeoutError:
            try:
                sock.sendall(b"x")
            except OSError:
                break
    elapsed = time.monotonic() - started
    rest, _ = read_until_closed(sock, limit_s=5)
    answer += rest
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert TOTAL_S - 1 < elapsed < TOTAL_S + 5, elapsed


def test_host_header_is_never_echoed(hostile_server: LiveServer) -> None:
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    for path in ("/fhir/metadata", "/.well-known/smart-configuration"):
        answer = httpx.get(f"{hostile_server.url}{path}", headers=forged, timeout=10)
        assert answer.status_code == 200
        assert "evil.example" not in answer.text and hostile_server.url in answer.text
