"""Security headers, the CORS allow-list and the cross-origin refusal (service.api.hardening).

A small app wired like the service (route middleware + `before_send` hook + `cors_config`), and
the real app built from fakes with `security_headers_middleware` wrapped around it (which is how
it covers every response from outside). `test_create_app_wires_the_hardening` checks the wiring
in `create_app` itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from litestar import Litestar, MediaType, Response, get, post
from litestar.datastructures import State
from litestar.testing import TestClient
from PIL import Image

from service.api.hardening import (
    CONTENT_SECURITY_POLICY,
    allowed_origins,
    cors_config,
    normalise_origin,
    security_headers_before_send,
    security_headers_middleware,
)
from service.api.problems import EXCEPTION_HANDLERS
from service.app import create_app
from service.bootstrap import Services
from service.outputs.dicom import DicomOutput
from service.outputs.fhir import FhirOutput
from service.pipeline.case import Case
from service.settings import Settings
from tests.dicom_factory import vl_photo
from tests.support.factories import fake_deps, fake_services, jpeg

OWN = "http://testserver.local"
EVIL = "https://evil.example"
FRIEND = "https://ehr.example"
HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": CONTENT_SECURITY_POLICY,
}


def assert_hardened(response: Any, *, csp: str = CONTENT_SECURITY_POLICY) -> None:
    """Each security header exactly once."""
    for name, value in {**HEADERS, "content-security-policy": csp}.items():
        assert response.headers.get_list(name) == [value], (name, response.headers)


# --- a small app ---------------------------------------------------------------------------------

calls: list[str] = []


@get("/page", media_type=MediaType.HTML, sync_to_thread=False)
def page() -> Response[str]:
    headers = {"Content-Security-Policy": "default-src 'self'", "Cache-Control": "no-cache"}
    return Response("<p>hi</p>", media_type=MediaType.HTML, headers=headers)


@get("/api/thing", sync_to_thread=False)
def thing() -> dict[str, str]:
    return {"patient": "data"}


@get("/api/stream", sync_to_thread=False)
def stream() -> Response[str]:
    return Response(
        "data: x\n\n", media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@get("/api/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("boom")


@post("/api/jobs", sync_to_thread=False)
def start_job() -> dict[str, str]:
    calls.append("job")
    return {"job": "started"}


@post("/fhir/DiagnosticReport/$diagnose", sync_to_thread=False)
def fhir_diagnose() -> dict[str, str]:
    calls.append("fhir")
    return {"resourceType": "Parameters"}


def small_app(origins: str = "", public_base_url: str | None = None) -> Litestar:
    return Litestar(
        route_handlers=[page, thing, stream, boom, start_job, fhir_diagnose],
        middleware=[security_headers_middleware],
        before_send=[security_headers_before_send],
        cors_config=cors_config(Settings(cors_allow_origins=origins)),
        exception_handlers=EXCEPTION_HANDLERS,
        state=State({"settings": SimpleNamespace(public_base_url=public_base_url)}),
        logging_config=None,
    )


@pytest.fixture
def small() -> Iterator[TestClient[Any]]:
    calls.clear()
    with TestClient(small_app(FRIEND)) as client:
        yield client


def test_every_response_has_the_headers_once(small: TestClient[Any]) -> None:
    ok = small.get("/api/thing")
    assert ok.status_code == 200
    assert_hardened(ok)
    assert ok.headers.get_list("cache-control") == ["no-store"]
    error = small.get("/api/boom")
    assert error.status_code == 500 and error.json()["code"] == "internal-error"
    assert_hardened(error)
    for unrouted in (small.get("/nowhere"), small.post("/api/thing"), small.get("/api/nowhere")):
        assert unrouted.status_code in {404, 405}
        assert_hardened(unrouted)  # Litestar answered before any route middleware: before_send
    assert small.get("/api/nowhere").headers["cache-control"] == "no-store"


def test_a_handlers_own_headers_are_kept(small: TestClient[Any]) -> None:
    page_response = small.get("/page")
    assert_hardened(page_response, csp="default-src 'self'")
    assert page_response.headers.get_list("cache-control") == ["no-cache"], "not patient data"
    sse = small.get("/api/stream")
    assert sse.headers.get_list("cache-control") == ["no-cache, no-store"]


def test_cross_origin_post_is_refused_before_the_handler(small: TestClient[Any]) -> None:
    refused = small.post("/api/jobs", headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert (body["code"], body["status"], body["instance"]) == ("cross-origin", 403, "/api/jobs")
    assert_hardened(refused)
    assert small.post("/api/jobs", headers={"Origin": "null"}).status_code == 403
    assert (
        small.post(
            "/api/jobs", headers={"Origin": "http://testserver.local.evil.example"}
        ).status_code
        == 403
    )
    assert calls == []
    fhir = small.post("/fhir/DiagnosticReport/$diagnose", headers={"Origin": EVIL})
    assert fhir.status_code == 403
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    issue = fhir.json()["issue"][0]
    assert fhir.json()["resourceType"] == "OperationOutcome"
    assert (issue["code"], issue["details"]["coding"][0]["code"]) == ("security", "cross-origin")
    assert calls == []


def test_same_origin_allowed_origin_and_no_origin_pass(small: TestClient[Any]) -> None:
    for headers in (
        {},
        {"Origin": OWN},
        {"Origin": "https://testserver.local"},  # behind a TLS-terminating proxy
        {"Origin": FRIEND},
    ):
        assert small.post("/api/jobs", headers=headers).status_code == 201, headers
    assert small.get("/api/thing", headers={"Origin": EVIL}).status_code == 200, "safe method"
    assert calls == ["job"] * 4
    allowed = small.post("/api/jobs", headers={"Origin": FRIEND})
    assert allowed.headers["access-control-allow-origin"] == FRIEND
    assert "X-Job-Id" in allowed.headers["access-control-expose-headers"]


def test_public_base_url_is_an_own_origin() -> None:
    with TestClient(small_app(public_base_url="https://skin.example/base")) as client:
        assert (
            client.post("/api/jobs", headers={"Origin": "https://skin.example"}).status_code == 201
        )
        assert client.post("/api/jobs", headers={"Origin": FRIEND}).status_code == 403


def test_cors_preflight() -> None:
    with TestClient(small_app(FRIEND)) as client:
        request = {"Access-Control-Request-Method": "POST"}
        ok = client.options(
            "/api/jobs",
            headers={**request, "Origin": FRIEND, "Access-Control-Request-Headers": "x-api-key"},
        )
        assert ok.status_code in {200, 204}
        assert ok.headers["access-control-allow-origin"] == FRIEND
        assert ok.headers["access-control-allow-methods"] == "DELETE, GET, POST"
        assert "x-api-key" in ok.headers["access-control-allow-headers"]
        assert_hardened(ok)
        assert client.options("/api/jobs", headers={**request, "Origin": EVIL}).status_code == 400
    with TestClient(small_app()) as client:
        no_cors = client.options("/api/jobs", headers={**request, "Origin": FRIEND})
        assert "access-control-allow-origin" not in no_cors.headers


def test_the_allow_list_setting() -> None:
    assert cors_config(Settings(cors_allow_origins="")) is None
    assert cors_config(Settings(cors_allow_origins=" , ")) is None
    assert allowed_origins(
        "HTTPS://EHR.example:443/, http://localhost:3000,https://ehr.example"
    ) == [
        "https://ehr.example",
        "http://localhost:3000",
    ]
    config = cors_config(Settings(cors_allow_origins="https://a.example,https://b.example:8443"))
    assert config is not None
    assert config.is_origin_allowed("https://b.example:8443")
    assert not config.is_origin_allowed("https://c.example")
    assert not config.is_origin_allowed("https://aXexample")  # the dot is not a wildcard
    assert not config.allow_credentials
    for bad in ("*", "https://*.example", "ehr.example", "https://ehr.example/path", "ftp://x"):
        with pytest.raises(ValueError, match="cors_allow_origins"):
            allowed_origins(bad)


def test_normalise_origin() -> None:
    assert normalise_origin("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert normalise_origin("http://Host:80") == "http://host"
    assert normalise_origin("https://[::1]:8443") == "https://[::1]:8443"
    for bad in ("null", "", "file://", "https://h:99999", "https://u@h", "https://h/?q"):
        assert normalise_origin(bad) is None, bad


# --- the real app, from fakes --------------------------------------------------------------------


def job_count(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        count: int = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        return count


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return fake_services(tmp_path, fake_deps(outputs=[FhirOutput(), DicomOutput()]))


@pytest.fixture
def client(services: Services) -> Iterator[TestClient[Any]]:
    app = security_headers_middleware(create_app(services.settings, services=services))
    with TestClient(app) as test_client:  # type: ignore[arg-type]
        yield test_client


def upload() -> dict[str, Any]:
    return {"files": {"image": ("p.jpg", jpeg(), "image/jpeg")}}


def test_a_cross_site_form_post_starts_no_job(client: TestClient[Any], tmp_path: Path) -> None:
    for path in ("/api/v1/diagnose", "/api/v1/diagnose-stream"):
        refused = client.post(path, **upload(), headers={"Origin": EVIL})
        assert refused.status_code == 403 and refused.json()["code"] == "cross-origin"
    fhir = client.post(
        "/fhir/DiagnosticReport/$diagnose",
        content=b"{}",
        headers={"Origin": EVIL, "Content-Type": "application/fhir+json"},
    )
    assert fhir.status_code == 403 and fhir.json()["resourceType"] == "OperationOutcome"
    assert job_count(tmp_path) == 0
    done = client.post("/api/v1/diagnose", **upload(), headers={"Origin": OWN})
    assert done.status_code == 200
    assert job_count(tmp_path) == 1


def test_real_routes_are_hardened(client: TestClient[Any]) -> None:
    body = client.post("/api/v1/diagnose", **upload()).json()
    pdf = client.get(body["pdf"]["url"])
    assert pdf.headers["content-type"].startswith("application/pdf")
    assert_hardened(pdf)
    assert pdf.headers["cache-control"] == "no-store"
    for path in (
        f"/fhir/DiagnosticReport/{body['case_id']}",
        f"/api/v1/reports/{body['case_id']}.dcm",
    ):
        fetched = client.get(path)
        assert fetched.status_code == 200 and fetched.headers["cache-control"] == "no-store"
        assert_hardened(fetched)
    with client.stream("POST", "/api/v1/diagnose-stream", **upload()) as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert sse.headers.get_list("cache-control") == ["no-cache, no-store"]
        assert_hardened(sse)
        sse.read()
    page_response = client.get("/")
    assert page_response.headers.get_list("content-security-policy") != []
    for name in ("x-frame-options", "x-content-type-options", "referrer-policy"):
        assert len(page_response.headers.get_list(name)) == 1, name
    static = client.get("/static/app.js")
    assert_hardened(static)
    assert "max-age=" in static.headers["cache-control"]
    for response in (client.get("/api/v1/nowhere"), client.get("/schema/openapi.json")):
        assert_hardened(response)


def test_wado_rs_returns_the_instance_with_a_zeroed_preamble(
    client: TestClient[Any], services: Services
) -> None:
    original = vl_photo(Image.new("RGB", (64, 64), (190, 140, 120)))
    polyglot = b"<html><script>alert(1)</script>".ljust(128, b" ") + original[128:]
    stored = client.post(
        "/dicomweb/studies",
        content=b"--b\r\nContent-Type: application/dicom\r\n\r\n" + polyglot + b"\r\n--b--\r\n",
        headers={"content-type": 'multipart/related; type="application/dicom"; boundary=b'},
    )
    assert stored.status_code == 200, stored.text
    url = stored.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    retrieved = client.get(url[url.index("/dicomweb/") :])
    assert retrieved.status_code == 200
    assert retrieved.headers["cache-control"] == "no-store"
    part = retrieved.content.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    assert part == bytes(128) + polyglot[128:]
    job_id = retrieved.headers["content-type"].rsplit("boundary=skinscreen-", 1)[1]
    record = services.store.db.get_case(job_id)  # type: ignore[attr-defined]
    stored_case = Case.from_record(*record) if record is not None else None
    assert stored_case is not None and stored_case.data == part, "stored zeroed, at intake"


def test_create_app_wires_the_hardening(tmp_path: Path) -> None:
    """Fails until app.py wires the middleware, the before_send hook and cors_config."""
    settings = Settings(data_dir=tmp_path, cors_allow_origins=FRIEND)
    services = fake_services(tmp_path, settings=settings)
    app = create_app(settings, services=services)
    assert app.cors_config is not None and app.cors_config.allow_origins == [FRIEND]
    with TestClient(app) as plain:
        assert_hardened(plain.get("/api/v1/nowhere"))
        assert (
            plain.post("/api/v1/diagnose", **upload(), headers={"Origin": EVIL}).status_code == 403
        )
        assert plain.get("/schema").headers["content-type"].startswith("application/")
        assert plain.get("/schema/openapi.json").json()["info"]["title"] == "skinscreen"
        assert plain.get("/schema/swagger").status_code == 404
