"""The cross-origin rule of service.api.hardening on bare ASGI scopes."""

from __future__ import annotations

from typing import Any

import pytest

from service.api.hardening import cors_config, is_cross_origin_refused, with_security_headers
from service.settings import Settings


def scope(method: str = "POST", origin: str | None = None, host: str = "skin.local:8000") -> Any:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "http", "method": method, "scheme": "http", "headers": headers, "path": "/"}


@pytest.mark.parametrize(
    ("method", "origin", "refused"),
    [
        ("POST", None, False),  # curl, a server: no Origin
        ("POST", "http://skin.local:8000", False),  # the page itself
        ("DELETE", "https://skin.local:8000", False),  # the same host behind a TLS proxy
        ("POST", "http://skin.local", True),  # another port is another origin
        ("POST", "https://evil.example", True),
        ("PUT", "https://evil.example", True),
        ("PATCH", "null", True),
        ("GET", "https://evil.example", False),  # safe methods are not checked
        ("OPTIONS", "https://evil.example", False),
        ("POST", "https://ehr.example", False),  # in the CORS allow-list
    ],
)
def test_unsafe_methods_from_other_origins_are_refused(
    method: str, origin: str | None, refused: bool
) -> None:
    cors = cors_config(Settings(cors_allow_origins="https://ehr.example"))
    assert is_cross_origin_refused(scope(method, origin), cors, None) is refused


def test_without_cors_only_own_origins_pass() -> None:
    assert is_cross_origin_refused(scope(origin="https://ehr.example"), None, None)
    public = "https://skin.example/"
    assert not is_cross_origin_refused(scope(origin="https://skin.example"), None, public)


def test_headers_are_added_once_and_no_store_merged() -> None:
    own = [(b"Content-Security-Policy", b"default-src 'self'"), (b"Cache-Control", b"no-cache")]
    merged = with_security_headers(own, "/api/v1/jobs/1/events")
    names = [name.lower() for name, _ in merged]
    assert len(names) == len(set(names))
    assert dict(merged)[b"Content-Security-Policy"] == b"default-src 'self'"
    assert dict(merged)[b"Cache-Control"] == b"no-cache, no-store"
    assert (b"cache-control", b"no-store") in with_security_headers([], "/fhir/metadata")
    assert b"cache-control" not in dict(with_security_headers([], "/static/app.js"))
    assert b"cache-control" not in dict(with_security_headers([], "/apiary"))
