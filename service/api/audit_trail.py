"""Every data access and every refusal leaves an audit record (`service.security.audit`).

An ASGI middleware: when a response has been sent, it records who (the principal the guard
authenticated, or `unknown`), the action (from the method), the resource type (from the
route), the case id (from the path, or the `X-Job-Id` / `Location` the answer names), the
outcome (from the status) and the client address. Public routes are recorded only when they
refuse. Nothing from bodies or query strings is recorded.
"""

from __future__ import annotations

from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.security.audit import AuditLog
from service.security.guard import Principal

_ACTIONS = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}
_RESOURCES = (
    ("/fhir/AuditEvent", "AuditEvent"),
    ("/fhir/Binary", "Binary"),
    ("/fhir/DiagnosticReport/$diagnose", "DiagnosticReport"),
    ("/fhir/DiagnosticReport", "DiagnosticReport"),
    ("/fhir/jobs", "Job"),
    ("/api/v1/reports", "DiagnosticReport"),
    ("/api/v1/jobs", "Job"),
    ("/api/v1/", "DiagnosticReport"),
    ("/dicomweb/", "ImagingStudy"),
    ("/auth/token", "Token"),
    ("/metrics", "Metrics"),
)


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403, 429):
        return "denied"
    return "not-found" if status == 404 else "failed"


def _resource(template: str) -> str:
    return next((kind for prefix, kind in _RESOURCES if template.startswith(prefix)), "Other")


def _case_id(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    params = scope.get("path_params") or {}
    for key in ("job_id", "report_id", "binary_id", "instance", "name"):
        value = params.get(key)
        if isinstance(value, str) and value:
            # a DICOM UID is dotted; a case id never is ("<id>.pdf", "<id>.photo" name files)
            return value[:64] if key == "instance" else value.split(".")[0]
    named = headers.get(b"x-job-id") or headers.get(b"location") or b""
    return named.decode("latin-1").rstrip("/").rsplit("/", 1)[-1] or None


def audit_middleware(app: ASGIApp) -> ASGIApp:
    """Record each request once its answer is complete (see the module docstring)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        seen: dict[str, Any] = {"status": 0, "headers": {}}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["headers"] = dict(message.get("headers") or [])
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            await _record(scope, seen["status"], seen["headers"])

    return middleware


async def _record(scope: Scope, status: int, headers: dict[bytes, bytes]) -> None:
    handler = scope.get("route_handler")
    opt = getattr(handler, "opt", None) or {}
    refused = status in (401, 403, 429)
    template = str(scope.get("path_template") or "")
    if not template or (opt.get("public") and not refused and template != "/auth/token"):
        return
    services = getattr(scope["app"].state, "services", None)
    if services is None:
        return
    principal = scope.get("state", {}).get("principal")
    client = principal.client_id if isinstance(principal, Principal) else "unknown"
    method = str(scope.get("method", "GET"))
    kind = _resource(template)
    action = "token" if kind == "Token" else _ACTIONS.get(method, "execute")
    if template.endswith("$diagnose") or template.endswith("/classify"):
        action = "execute"
    address = (scope.get("client") or ("", 0))[0] or None
    await AuditLog(services.store).record(
        client=client,
        action=action,
        resource_type=kind,
        resource_id=_case_id(scope, headers) if status < 400 or status == 404 else None,
        outcome=_outcome(status),
        source=address,
        detail=f"http-{status}",
    )
