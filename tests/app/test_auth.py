"""Authentication on: API keys, SMART Backend Services tokens (real keys, real JWTs), scopes,
ownership, and the route table (every route has an access rule)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar
from litestar.testing import TestClient

from service.app import create_app
from service.outputs.dicom import DicomOutput
from service.outputs.fhir import FhirOutput
from service.security.clients import key_digest
from service.settings import Settings
from tests.support.factories import fake_deps, fake_services, jpeg

BASE = "http://testserver.local"
TOKEN_URL = f"{BASE}/auth/token"
FHIR = "application/fhir+json"
ALL_SCOPES = ["system/DiagnosticReport.cruds", "system/ImagingStudy.cr"]


def rsa_key() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return key, {"keys": [{**public, "kid": "k1", "alg": "RS384", "use": "sig"}]}


@pytest.fixture(scope="module")
def ehr_key() -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    return rsa_key()


@pytest.fixture
def app(tmp_path: Path, ehr_key: tuple[rsa.RSAPrivateKey, dict[str, Any]]) -> Litestar:
    clients = {
        "clients": [
            {"id": "clinic-a", "scopes": ALL_SCOPES, "api_key_sha256": [key_digest("key-a")]},
            {"id": "clinic-b", "scopes": ALL_SCOPES, "api_key_sha256": [key_digest("key-b")]},
            {"id": "reader", "scopes": ["system/DiagnosticReport.r"],
             "api_key_sha256": [key_digest("key-r")]},
            {"id": "auditor", "scopes": ["system/*.rs"], "api_key_sha256": [key_digest("key-x")]},
            {"id": "ehr-1", "scopes": ["system/DiagnosticReport.cr"], "jwks": ehr_key[1]},
        ]
    }  # fmt: skip
    (tmp_path / "clients.json").write_text(json.dumps(clients))
    settings = Settings(
        data_dir=tmp_path, auth="on", public_base_url=BASE, rate_limit_per_minute=10_000
    )
    services = fake_services(tmp_path, fake_deps(outputs=[FhirOutput(), DicomOutput()]), settings)
    return create_app(settings, services=services)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Any]]:
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": f"key-{name}"}


def upload() -> dict[str, Any]:
    return {"files": {"image": ("p.jpg", jpeg(), "image/jpeg")}}


def assertion(
    key: rsa.RSAPrivateKey, *, aud: str = TOKEN_URL, exp_in: float = 120, jti: str = ""
) -> str:
    now = int(time.time())
    claims = {
        "iss": "ehr-1",
        "sub": "ehr-1",
        "aud": aud,
        "exp": now + int(exp_in),
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": "k1"})


def ask_token(client: TestClient[Any], signed: str, scope: str = "") -> Any:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
    }
    if scope:
        form["scope"] = scope
    return client.post("/auth/token", data=form)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x" * 32, path)


def test_every_route_has_an_access_rule_and_closed_ones_answer_401(
    app: Litestar, client: TestClient[Any]
) -> None:
    open_paths = set()
    for route in app.routes:
        for handler in route.route_handlers:  # type: ignore[attr-defined]
            if set(handler.http_methods) == {"OPTIONS"}:
                continue  # Litestar's own OPTIONS answer (no data)
            opt = handler.opt or {}
            assert opt.get("public") or opt.get("scopes"), f"{route.path} has no access rule"
            if opt.get("public"):
                open_paths.add(route.path)
                continue
            for method in handler.http_methods:
                response = client.request(method, concrete(route.path))
                assert response.status_code == 401, (method, route.path, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
    assert {"/health", "/ready", "/.well-known/smart-configuration", "/auth/token"} <= open_paths
    fhir = client.get("/fhir/DiagnosticReport/abc")
    assert fhir.status_code == 401 and fhir.json()["resourceType"] == "OperationOutcome"


def test_a_client_reads_its_own_cases_and_not_anothers(client: TestClient[Any]) -> None:
    body = client.post("/api/v1/diagnose", headers=key("a"), **upload()).json()
    job_id = body["case_id"]
    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/reports/{job_id}.pdf",
                 f"/fhir/DiagnosticReport/{job_id}", f"/fhir/Binary/{job_id}"):  # fmt: skip
        assert client.get(path, headers=key("a")).status_code == 200, path
        other = client.get(path, headers=key("b"))
        assert other.status_code == 404, path  # existence is not leaked
        assert client.get(path, headers=key("x")).status_code == 200, path  # system/*.rs
    events = client.get(f"/api/v1/jobs/{job_id}/events", headers={**key("b"), "Last-Event-ID": "1"})
    assert events.status_code == 404
    assert client.delete(f"/api/v1/jobs/{job_id}?erase=true", headers=key("b")).status_code == 404


def test_scopes_are_enforced(client: TestClient[Any]) -> None:
    refused = client.post("/api/v1/diagnose", headers=key("r"), **upload())
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    assert 'scope="system/DiagnosticReport.c"' in refused.headers["www-authenticate"]
    assert client.post("/api/v1/diagnose", headers=key("wrong"), **upload()).status_code == 401
    bearer = {"Authorization": "Bearer key-a"}
    assert client.post("/api/v1/classify", headers=bearer, **upload()).status_code == 200


def test_private_key_jwt_gets_a_token_that_runs_diagnose(
    client: TestClient[Any], ehr_key: tuple[rsa.RSAPrivateKey, dict[str, Any]]
) -> None:
    config = client.get("/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == TOKEN_URL
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    granted = ask_token(client, assertion(ehr_key[0]), "system/DiagnosticReport.cr")
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 300
    jwks = client.get("/auth/jwks").json()
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWKSet.from_dict(jwks).keys[0].key,
        algorithms=["ES384"],
        audience=BASE,
    )
    assert claims["sub"] == "ehr-1" and claims["exp"] - claims["iat"] <= 300
    image = {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "image", "valueAttachment": image}],
    }
    report = client.post(
        "/fhir/DiagnosticReport/$diagnose",
        content=json.dumps(parameters),
        headers={"Authorization": f"Bearer {body['access_token']}", "content-type": FHIR},
    )
    assert report.status_code == 200 and report.json()["resourceType"] == "DiagnosticReport"
    tampered = body["access_token"][:-4] + (
        "AAAA" if body["access_token"][-4:] != "AAAA" else "BBBB"
    )
    assert (
        client.get(
            "/fhir/DiagnosticReport/x", headers={"Authorization": f"Bearer {tampered}"}
        ).status_code
        == 401
    )


def test_bad_assertions_are_refused(
    client: TestClient[Any], ehr_key: tuple[rsa.RSAPrivateKey, dict[str, Any]]
) -> None:
    private = ehr_key[0]
    stranger, _ = rsa_key()
    cases = {
        "wrong audience": assertion(private, aud="https://elsewhere.example/token"),
        "expired": assertion(private, exp_in=-60),
        "too long": assertion(private, exp_in=3600),
        "wrongly signed": assertion(stranger),
    }
    for what, signed in cases.items():
        refused = ask_token(client, signed)
        assert refused.status_code == 401, what
        assert refused.json()["error"] == "invalid_client", what
    once = assertion(private, jti="one-time")
    assert ask_token(client, once).status_code == 200
    replayed = ask_token(client, once)
    assert replayed.status_code == 401 and "already used" in replayed.json()["error_description"]
    too_much = ask_token(client, assertion(private), "system/AuditEvent.r")
    assert too_much.status_code == 400 and too_much.json()["error"] == "invalid_scope"
    bad_grant = client.post("/auth/token", data={"grant_type": "password"})
    assert bad_grant.json()["error"] == "unsupported_grant_type"


def test_auth_off_is_refused_off_loopback(tmp_path: Path) -> None:
    from service.security.setup import AuthModeRefused, check_mode

    settings = Settings(data_dir=tmp_path)
    check_mode(settings, "127.0.0.1")
    check_mode(settings, "::1")
    with pytest.raises(AuthModeRefused, match="loopback"):
        check_mode(settings, "0.0.0.0")
    check_mode(Settings(data_dir=tmp_path, auth="on"), "0.0.0.0")


def test_accesses_and_refusals_are_audited_and_readable_as_audit_events(
    client: TestClient[Any],
) -> None:
    job_id = client.post("/api/v1/diagnose", headers=key("a"), **upload()).json()["case_id"]
    assert client.get(f"/api/v1/reports/{job_id}.pdf", headers=key("a")).status_code == 200
    assert client.get(f"/api/v1/reports/{job_id}.pdf", headers=key("b")).status_code == 404
    assert client.get("/api/v1/jobs/x", headers=key("nope")).status_code == 401
    assert client.delete(f"/api/v1/reports/{job_id}", headers=key("a")).status_code == 204
    assert client.get(f"/api/v1/reports/{job_id}.pdf", headers=key("a")).status_code == 404
    assert client.get("/fhir/AuditEvent", headers=key("a")).status_code == 403  # needs .r scope
    bundle = client.get("/fhir/AuditEvent?_count=50", headers=key("x")).json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    events = [entry["resource"] for entry in bundle["entry"]]
    seen = {
        (
            e["agent"][0]["who"]["identifier"]["value"],
            e["action"],
            e["outcome"],
            json.dumps(e.get("entity", [])),
        )
        for e in events
    }
    assert any(who == "clinic-a" and act == "C" and job_id in ent for who, act, _, ent in seen)
    assert any(who == "clinic-b" and out == "4" and job_id in ent for who, _, out, ent in seen)
    assert any(who == "clinic-a" and act == "D" and job_id in ent for who, act, _, ent in seen)
    assert any(who == "unknown" and out == "4" for who, _, out, _ in seen)  # the bad key
    text = json.dumps(bundle)
    assert "Hong" not in text and "X-API-Key" not in text and "key-a" not in text


def test_the_capability_statement_advertises_smart(client: TestClient[Any], tmp_path: Path) -> None:
    from tests.support.fhir_checks import assert_valid_r4

    statement = client.get("/fhir/metadata").json()  # open, like the SMART configuration
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == TOKEN_URL
    assert client.get("/fhir/.well-known/smart-configuration").status_code == 200
    from service.settings import Settings as Fresh

    assert_valid_r4(statement, Fresh().shared_dir)


def test_tokens_of_a_trusted_issuer_and_the_rate_limit(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    issuer_key = ec.generate_private_key(ec.SECP384R1())
    public = jwt.algorithms.ECAlgorithm.to_jwk(issuer_key.public_key(), as_dict=True)
    (tmp_path / "idp.jwks").write_text(json.dumps({"keys": [{**public, "kid": "idp"}]}))
    clients = {"clients": [{"id": "clinic-a", "scopes": ALL_SCOPES,
                            "api_key_sha256": [key_digest("key-a")]}]}  # fmt: skip
    (tmp_path / "clients.json").write_text(json.dumps(clients))
    settings = Settings(
        data_dir=tmp_path,
        auth="on",
        public_base_url=BASE,
        rate_limit_per_minute=3,
        trusted_issuers=json.dumps({"https://idp.example": str(tmp_path / "idp.jwks")}),
    )
    app = create_app(settings, services=fake_services(tmp_path, fake_deps(), settings))
    now = int(time.time())
    claims = {"iss": "https://idp.example", "sub": "partner", "aud": BASE, "exp": now + 60,
              "scope": "system/DiagnosticReport.r"}  # fmt: skip
    external = jwt.encode(claims, issuer_key, algorithm="ES384", headers={"kid": "idp"})
    wrong_aud = jwt.encode({**claims, "aud": "https://other"}, issuer_key, algorithm="ES384")
    with TestClient(app, base_url=BASE) as client:
        bearer = {"Authorization": f"Bearer {external}"}
        assert client.get("/api/v1/jobs/" + "x" * 32, headers=bearer).status_code == 404
        assert client.post("/api/v1/classify", headers=bearer, **upload()).status_code == 403
        other = {"Authorization": f"Bearer {wrong_aud}"}
        assert client.get("/api/v1/jobs/x", headers=other).status_code == 401
        answers = [client.get("/api/v1/jobs/x", headers=key("a")).status_code for _ in range(4)]
        assert answers[:3] == [404, 404, 404] and answers[3] == 429
        limited = client.get("/api/v1/jobs/x", headers=key("a"))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
