"""Browser-facing hardening: security headers on every response, the CORS allow-list, and the
refusal of cross-site state-changing requests.

- `security_headers_middleware` (route middleware) adds `X-Content-Type-Options`,
  `Referrer-Policy`, `X-Frame-Options`, a strict `Content-Security-Policy` and, under the routes
  that carry patient data, `Cache-Control: no-store` — never a second copy of a header the
  handler set itself (a handler's `Cache-Control` there gets `no-store` appended). It also
  answers 403 `cross-origin` to a POST/PUT/PATCH/DELETE whose `Origin` is neither the request's
  own origin nor in the CORS allow-list: with CORS off a browser still sends a cross-site
  "simple" request (a multipart form POST), which would otherwise start a job.
- `security_headers_before_send` adds the same headers to what Litestar answers before any route
  middleware runs (404 for an unknown path, 405, CORS preflights).
- `cors_config(settings)`: Litestar's `CORSConfig` for `settings.cors_allow_origins`, or None.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Method, Receive, Scope, Send

from fhir_mappings.outcome import operation_outcome
from service.api.fhir_wire import FHIR_JSON
from service.api.problems import PROBLEM_JSON
from service.errors import ServiceError
from service.logging import get_logger
from service.settings import Settings

log = get_logger(__name__)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
)
#: Route prefixes whose responses carry patient data: never stored by a cache.
PATIENT_DATA_PREFIXES = ("/api", "/fhir", "/dicomweb")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CORS_METHODS: list[Method] = ["GET", "POST", "DELETE"]
CORS_REQUEST_HEADERS = [
    *("Authorization", "Content-Type", "X-API-Key"),
    *("Last-Event-ID", "Prefer", "Accept-Language"),
]
CORS_EXPOSED_HEADERS = ["X-Job-Id", "Link", "Content-Location", "Retry-After", "X-Progress"]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CrossOriginRefused(ServiceError):
    """A state-changing request sent by a page of another origin."""

    status, code, title = 403, "cross-origin", "Cross-origin request refused"


# --- origins -------------------------------------------------------------------------------------


def normalise_origin(value: str) -> str | None:
    """`scheme://host[:port]` as a browser writes it in `Origin` (lower case, no default port,
    no trailing slash), or None when `value` is not an http(s) origin (e.g. `null`)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or "*" in host:
        return None
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    return (
        f"{scheme}://{host}"
        if port in (None, _DEFAULT_PORTS[scheme])
        else f"{scheme}://{host}:{port}"
    )


def allowed_origins(setting: str) -> list[str]:
    """The comma-separated `cors_allow_origins` setting, normalised. Raises ValueError for an
    entry that is not an exact http(s) origin (wildcards included: list each origin)."""
    origins: list[str] = []
    for entry in (part.strip() for part in setting.split(",")):
        if not entry:
            continue
        origin = normalise_origin(entry)
        if origin is None:
            raise ValueError(
                f"cors_allow_origins: {entry[:100]!r} is not an origin like https://host[:port]"
            )
        if origin not in origins:
            origins.append(origin)
    return origins


def cors_config(settings: Settings) -> CORSConfig | None:
    """CORS for the allow-list in `settings.cors_allow_origins`; None (no CORS) when it is empty."""
    origins = allowed_origins(settings.cors_allow_origins)
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=list(CORS_METHODS),
        allow_headers=list(CORS_REQUEST_HEADERS),
        expose_headers=list(CORS_EXPOSED_HEADERS),
        allow_credentials=False,  # credentials travel in headers, never in cookies
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def own_origins(scope: Scope, public_base_url: str | None) -> set[str]:
    """The request's own origin(s): its scheme and `Host` (also as https, for a TLS-terminating
    proxy that does not forward the scheme), and the origin of `public_base_url`."""
    own: set[str] = set()
    host = _header(scope, b"host")
    if host is None and scope.get("server"):
        server_host, server_port = scope["server"]  # type: ignore[misc]
        host = f"{server_host}:{server_port}" if server_port else str(server_host)
    if host:
        for scheme in {str(scope.get("scheme") or "http"), "https"}:
            origin = normalise_origin(f"{scheme}://{host}")
            if origin:
                own.add(origin)
    if public_base_url:
        parts = urlsplit(public_base_url)
        origin = normalise_origin(f"{parts.scheme}://{parts.netloc}")
        if origin:
            own.add(origin)
    return own


def is_cross_origin_refused(
    scope: Scope, cors: CORSConfig | None, public_base_url: str | None
) -> bool:
    """True for an unsafe method with an `Origin` that is neither ours nor allowed by CORS."""
    if str(scope.get("method", "")).upper() not in UNSAFE_METHODS:
        return False
    origin = _header(scope, b"origin")
    if origin is None:
        return False  # not from a browser page (curl, a server): browsers send it cross-origin
    normalised = normalise_origin(origin)
    if normalised is None:
        return True  # `null` (sandboxed frame, file:) or garbage
    if normalised in own_origins(scope, public_base_url):
        return False
    return cors is None or not cors.is_origin_allowed(normalised)


# --- headers -------------------------------------------------------------------------------------


def carries_patient_data(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PATIENT_DATA_PREFIXES)


def with_security_headers(headers: Any, path: str) -> list[tuple[bytes, bytes]]:
    """`headers` (ASGI name/value pairs) plus every missing security header."""
    merged = [(bytes(name), bytes(value)) for name, value in headers or []]
    present = {name.lower() for name, _ in merged}
    merged += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
    if carries_patient_data(path):
        cache = [i for i, (name, _) in enumerate(merged) if name.lower() == b"cache-control"]
        if not cache:
            merged.append((b"cache-control", b"no-store"))
        elif not any(b"no-store" in merged[i][1].lower() for i in cache):
            name, value = merged[cache[0]]
            merged[cache[0]] = (name, value + b", no-store" if value.strip() else b"no-store")
    return merged


async def security_headers_before_send(message: Message, scope: Scope) -> None:
    """`Litestar(before_send=[...])`: the headers on responses no route middleware saw."""
    if scope["type"] == ScopeType.HTTP and message["type"] == "http.response.start":
        message["headers"] = with_security_headers(message.get("headers"), scope.get("path", ""))


# --- the middleware ------------------------------------------------------------------------------


def _refusal(path: str) -> tuple[bytes, bytes]:
    """(content type, body): OperationOutcome under /fhir, problem+json elsewhere."""
    error = CrossOriginRefused(
        "a state-changing request from another origin is refused; "
        "allow the origin with SKINSCREEN_CORS_ALLOW_ORIGINS to call this service from it"
    )
    if path == "/fhir" or path.startswith("/fhir/"):
        outcome = operation_outcome(error)
        outcome["issue"][0]["code"] = "security"
        return f"{FHIR_JSON}; charset=utf-8".encode(), json.dumps(outcome).encode()
    return PROBLEM_JSON.encode(), json.dumps(error.problem(instance=path)).encode()


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    """Security headers on every response; 403 for a cross-site state-changing request.

    The CORS allow-list is the app's `cors_config`; `public_base_url` (if set) is an own origin.
    Also works wrapped around a whole `Litestar` app from outside."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(message.get("headers"), path)
            await send(message)

        litestar_app = scope.get("litestar_app") or app
        cors: CORSConfig | None = getattr(litestar_app, "cors_config", None)
        settings = getattr(getattr(litestar_app, "state", None), "settings", None)
        public_base_url = getattr(settings, "public_base_url", None)
        if is_cross_origin_refused(scope, cors, public_base_url):
            log.info(
                "cross_origin_refused", path=path, origin=(_header(scope, b"origin") or "")[:100]
            )
            content_type, body = _refusal(path)
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": CrossOriginRefused.status,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body, "more_body": False})
            return
        await app(scope, receive, send_wrapper)

    return middleware
