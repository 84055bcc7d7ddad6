"""FHIR write-back and image fetches authenticate with SMART Backend Services, over real HTTP.

The authorization server is a real one of ours: the service's own `/auth/token` (uvicorn on
loopback, `SKINSCREEN_AUTH=on`), with clients registered by the public half of keys made here.
The FHIR server is a small one made for the test (loopback, a thread): its SMART configuration
names the service's token endpoint, and it answers `Patient/123`, `Binary/x` and transaction
POSTs only when the bearer token verifies against the service's `/auth/jwks` (sub = our client
id, exp), else 401. It records the `jti` of every token it saw, so the tests can count tokens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.errors import FetchNotAllowed, FhirUnprocessable, ServiceUnavailable
from service.fhir_server import FhirServer
from service.fhir_server.guard import allowed_token_url
from service.settings import Settings
from tests.support.live_server import LiveServer, free_port, start_server, stop_server

pytestmark = pytest.mark.anyio

SCOPE = "system/DiagnosticReport.r"
PATIENT = {"resourceType": "Patient", "id": "123", "name": [{"family": "Oakley"}]}
IMAGE = b"\x89PNG\r\n\x1a\n not really a png"
RSA_CLIENT, EC_CLIENT = "ehr-writer-rsa", "ehr-writer-ec"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK with its RFC 7638 thumbprint as kid (computed here, independently)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        required = {"e": b64url(e), "kty": "RSA", "n": b64url(n)}
        alg = "RS384"
    else:
        point = key.public_key().public_numbers()
        x, y = point.x.to_bytes(48, "big"), point.y.to_bytes(48, "big")
        required = {"crv": "P-384", "kty": "EC", "x": b64url(x), "y": b64url(y)}
        alg = "ES384"
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    kid = b64url(hashlib.sha256(canonical).digest())
    return {**required, "kid": kid, "alg": alg, "use": "sig"}


def write_pem(key: PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@dataclass
class Keys:
    rsa_path: Path
    ec_path: Path
    wrong_path: Path
    rsa_kid: str
    secrets: list[str]  # text that must never appear in an error


@dataclass
class EhrState:
    """What the FHIR server shares with the tests."""

    service_url: str
    url: str = ""
    token_endpoint: str = ""
    seen: list[tuple[str, str, str | None, int]] = field(default_factory=list)  # method, path…
    revoked: set[str] = field(default_factory=set)
    reject_all: bool = False
    jwks: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.revoked.clear()
            self.reject_all = False
            self.token_endpoint = f"{self.service_url}/auth/token"

    def verify(self, authorization: str) -> tuple[str | None, bool]:
        """(jti of the token or None, whether it is accepted)."""
        if not authorization.startswith("Bearer "):
            return None, False
        if self.jwks is None:
            self.jwks = httpx.get(f"{self.service_url}/auth/jwks", timeout=5).json()
        token = authorization.removeprefix("Bearer ")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = next(k for k in jwt.PyJWKSet.from_dict(self.jwks).keys if k.key_id == kid)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["ES384"],
                audience=self.service_url,
                issuer=self.service_url,
                options={"require": ["exp", "sub", "jti"]},
            )
        except (StopIteration, jwt.InvalidTokenError):
            return None, False
        jti = str(claims["jti"])
        good = claims["sub"] in (RSA_CLIENT, EC_CLIENT) and SCOPE in str(claims.get("scope"))
        return jti, good and jti not in self.revoked and not self.reject_all

    def tokens(self, path: str | None = None) -> list[str | None]:
        with self.lock:
            return [jti for _, p, jti, _ in self.seen if path is None or p == path]


def handler_for(state: EhrState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            return

        def answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def json(self, status: int, body: dict[str, Any]) -> None:
            self.answer(status, json.dumps(body).encode(), "application/fhir+json")

        def authorized(self) -> bool:
            jti, good = state.verify(self.headers.get("Authorization", ""))
            with state.lock:
                state.seen.append((self.command, self.path, jti, 200 if good else 401))
            if not good:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                self.send_header("Content-Length", "0")
                self.end_headers()
            return good

        def do_GET(self) -> None:
            if self.path == "/fhir/.well-known/smart-configuration":
                config = {
                    "token_endpoint": state.token_endpoint,
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "grant_types_supported": ["client_credentials"],
                }
                self.answer(200, json.dumps(config).encode(), "application/json")
            elif self.path in ("/fhir/Patient/123", "/fhir/Binary/x") and self.authorized():
                if self.path.endswith("123"):
                    self.json(200, PATIENT)
                else:
                    self.answer(200, IMAGE, "image/png")
            elif self.path not in ("/fhir/Patient/123", "/fhir/Binary/x"):
                self.json(404, {"resourceType": "OperationOutcome"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/fhir" and self.authorized():
                entries = [
                    {"response": {"status": "201 Created", "location": f"Observation/{n}"}}
                    for n, _ in enumerate(body.get("entry", []))
                ]
                response = {"resourceType": "Bundle", "type": "transaction-response"}
                self.json(200, {**response, "entry": entries})

    return Handler


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    tmp = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    wrong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = [write_pem(k, tmp / f"{n}.pem") for k, n in ((rsa_key, "rsa"), (ec_key, "ec"))]
    wrong_path = write_pem(wrong, tmp / "wrong.pem")
    pem_lines = [line for p in (*paths, wrong_path) for line in p.read_text().splitlines()[1:-1]]
    clients = [
        {"id": RSA_CLIENT, "scopes": [SCOPE], "jwks": {"keys": [public_jwk(rsa_key)]}},
        {"id": EC_CLIENT, "scopes": [SCOPE], "jwks": {"keys": [public_jwk(ec_key)]}},
    ]
    (tmp / "clients.json").write_text(json.dumps({"clients": clients}))
    kid = public_jwk(rsa_key)["kid"]
    return Keys(paths[0], paths[1], wrong_path, kid, ["PRIVATE KEY", "eyJ", *pem_lines])


@pytest.fixture(scope="module")
def service(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service as the EHR's authorization server (auth on, our clients registered)."""
    port = free_port()
    env = {
        "SKINSCREEN_AUTH": "on",
        "SKINSCREEN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SKINSCREEN_CLIENTS_FILE": str(keys.rsa_path.parent / "clients.json"),
    }
    server = start_server(tmp_path_factory.mktemp("authz"), env, port=port, name="authz")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def ehr_server(service: LiveServer) -> Iterator[EhrState]:
    state = EhrState(service.url)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def ehr(ehr_server: EhrState) -> EhrState:
    ehr_server.reset()
    return ehr_server


def settings(ehr: EhrState, key: Path, client_id: str = RSA_CLIENT, **extra: Any) -> Settings:
    return Settings(
        fhir_server_url=ehr.url,
        fhir_client_id=client_id,
        fhir_client_key_path=key,
        fhir_client_scopes=SCOPE,
        fhir_fetch_timeout_s=10,
        **extra,
    )


def assert_no_secret(text: str, keys: Keys) -> None:
    leaked = [secret for secret in keys.secrets if secret in text]
    assert not leaked, f"the message leaks secret material: {text}"


@pytest.mark.parametrize("client_id", [RSA_CLIENT, EC_CLIENT])
async def test_read_and_fetch_carry_one_reused_token(
    ehr: EhrState, keys: Keys, client_id: str
) -> None:
    key = keys.rsa_path if client_id == RSA_CLIENT else keys.ec_path
    server = FhirServer(settings(ehr, key, client_id))
    try:
        assert await server.read_patient("Patient/123") == PATIENT
        assert await server.fetch_attachment("Binary/x") == IMAGE
        assert await server.fetch_attachment(f"{ehr.url}/Binary/x") == IMAGE
    finally:
        await server.aclose()
    assert [status for *_, status in ehr.seen] == [200, 200, 200]
    tokens = ehr.tokens()
    assert None not in tokens and len(set(tokens)) == 1  # three FHIR calls, one token


async def test_concurrent_calls_fetch_a_single_token(ehr: EhrState, keys: Keys) -> None:
    server = FhirServer(settings(ehr, keys.rsa_path))
    try:
        patients = await asyncio.gather(*(server.read_patient("Patient/123") for _ in range(6)))
    finally:
        await server.aclose()
    assert patients == [PATIENT] * 6
    assert len(set(ehr.tokens())) == 1


async def test_revoked_token_is_refreshed_once_and_the_call_succeeds(
    ehr: EhrState, keys: Keys
) -> None:
    server = FhirServer(settings(ehr, keys.rsa_path))
    try:
        await server.read_patient("Patient/123")
        first = ehr.tokens()[0]
        assert first is not None
        ehr.revoked.add(first)  # revoked (or expired) at the FHIR server before its expires_in
        assert await server.fetch_attachment("Binary/x") == IMAGE
        assert await server.read_patient("Patient/123") == PATIENT
    finally:
        await server.aclose()
    seen = [(path, status) for _, path, _, status in ehr.seen]
    assert seen == [
        ("/fhir/Patient/123", 200),
        ("/fhir/Binary/x", 401),
        ("/fhir/Binary/x", 200),
        ("/fhir/Patient/123", 200),
    ]
    tokens = ehr.tokens()
    assert tokens[1] == first and tokens[2] != first and tokens[3] == tokens[2]


async def test_a_refused_fresh_token_is_retried_once_then_503(ehr: EhrState, keys: Keys) -> None:
    ehr.reject_all = True
    server = FhirServer(settings(ehr, keys.rsa_path))
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            await server.read_patient("Patient/123")
        result = await server.post_transaction({"resourceType": "Bundle", "type": "transaction"})
    finally:
        await server.aclose()
    assert "refused our fresh access token" in caught.value.detail
    assert result.status == "failed" and result.http_status == 401
    assert [status for *_, status in ehr.seen] == [401] * 4  # each: one try, one retry
    first, second, third, fourth = ehr.tokens()
    assert first != second and second == third and third != fourth


async def test_write_back_carries_the_token(ehr: EhrState, keys: Keys) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Observation"}, "request": {"method": "POST"}}],
    }
    server = FhirServer(settings(ehr, keys.ec_path, EC_CLIENT))
    try:
        result = await server.post_transaction(bundle)
        again = await server.post_transaction(bundle)
    finally:
        await server.aclose()
    assert result.status == "succeeded" and again.status == "succeeded", result.error
    assert result.entries == [{"status": "201 Created", "location": "Observation/0"}]
    assert [(method, status) for method, _, _, status in ehr.seen] == [("POST", 200)] * 2
    assert len(set(ehr.tokens())) == 1


@pytest.mark.parametrize("same_kid", [False, True], ids=["own-kid", "registered-kid"])
async def test_a_wrong_key_is_503_for_reads_and_a_failed_write_back(
    ehr: EhrState, keys: Keys, same_kid: bool
) -> None:
    extra = {"fhir_client_key_id": keys.rsa_kid} if same_kid else {}
    server = FhirServer(settings(ehr, keys.wrong_path, **extra))
    try:
        with pytest.raises(ServiceUnavailable) as read:
            await server.read_patient("Patient/123")
        with pytest.raises(ServiceUnavailable) as fetch:
            await server.fetch_attachment("Binary/x")
        result = await server.post_transaction({"resourceType": "Bundle", "type": "transaction"})
    finally:
        await server.aclose()
    for message in (read.value.detail, fetch.value.detail, result.error or ""):
        assert message.startswith("the FHIR server's authorization server refused us"), message
        assert "HTTP 401, invalid_client" in message
        assert_no_secret(message, keys)
    assert result.status == "failed" and result.http_status is None
    assert ehr.seen == []  # no FHIR resource was asked for without a token


async def test_token_url_from_discovery_must_be_https_or_loopback(
    ehr: EhrState, keys: Keys
) -> None:
    ehr.token_endpoint = "http://authz.example.org/auth/token"
    server = FhirServer(settings(ehr, keys.rsa_path))
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            await server.read_patient("Patient/123")
    finally:
        await server.aclose()
    assert "token URL must be https" in caught.value.detail
    assert ehr.seen == []


async def test_a_configured_token_url_skips_discovery(ehr: EhrState, keys: Keys) -> None:
    ehr.token_endpoint = "https://never.example.org/token"  # not used: configured wins
    configured = f"{ehr.service_url}/auth/token"
    server = FhirServer(settings(ehr, keys.rsa_path, fhir_token_url=configured))
    try:
        assert await server.read_patient("Patient/123") == PATIENT
    finally:
        await server.aclose()
    assert len(ehr.tokens()) == 1 and ehr.tokens()[0] is not None


async def test_without_smart_no_authorization_is_sent(ehr: EhrState) -> None:
    server = FhirServer(Settings(fhir_server_url=ehr.url))
    try:
        with pytest.raises(FhirUnprocessable, match="HTTP 401"):  # as before SMART
            await server.read_patient("Patient/123")
    finally:
        await server.aclose()
    assert ehr.seen == [("GET", "/fhir/Patient/123", None, 401)]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://authz.example.org/oauth/token", True),
        ("http://127.0.0.1:9000/auth/token", True),
        ("http://[::1]:9000/auth/token", True),
        ("http://localhost/token", True),
        ("http://authz.example.org/token", False),
        ("http://10.0.0.5/token", False),
        ("https://user:pw@authz.example.org/token", False),
        ("https://authz.example.org/a/../token", False),
        ("https://authz.example.org/token#frag", False),
        ("ftp://authz.example.org/token", False),
        ("/auth/token", False),
    ],
)
def test_token_url_rule(url: str, allowed: bool) -> None:
    if allowed:
        assert allowed_token_url(url).startswith(url.split("://")[0])
    else:
        with pytest.raises(FetchNotAllowed):
            allowed_token_url(url)
