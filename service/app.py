"""create_app: wiring only (routes, error handlers, logging, start-up)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from typing import Any

import structlog
from litestar import Litestar, Response, Router
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from service.api.audit import AuditController
from service.api.audit_trail import audit_middleware
from service.api.auth import AUTH_ROUTES, auth_guard
from service.api.body_timeout import body_timeout
from service.api.dicomweb import DicomWebController
from service.api.fhir import FhirController
from service.api.fhir_search import FhirSearchController
from service.api.hardening import (
    cors_config,
    security_headers_before_send,
    security_headers_middleware,
)
from service.api.health import health, metrics_page, ready
from service.api.problems import EXCEPTION_HANDLERS, problem_response
from service.api.rest import RestController
from service.api.reviews import FhirReviewController, ReviewController
from service.api.web import index_page, static_router
from service.bootstrap import Services, build_services
from service.logging import configure_logging, get_logger
from service.metrics import metrics_middleware
from service.security.setup import build_security
from service.settings import Settings, get_settings
from service.tracing import configure_tracing

log = get_logger("service.http")


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    """Bind a request id (X-Request-ID in, or a new one) and log method, path, status, timing."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming if incoming.isprintable() and incoming else uuid.uuid4().hex
        started = time.perf_counter()
        status = {"code": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await app(scope, receive, send_wrapper)
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status["code"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware


def schema_not_found_as_problem(response: Response[Any]) -> Response[Any]:
    """Litestar answers unknown `/schema/…` paths with an HTML page: answer problem+json."""
    media_type = getattr(response.media_type, "value", response.media_type)
    if response.status_code == 404 and str(media_type).startswith("text/html"):
        return problem_response(
            {
                "type": "https://skinscreen.dev/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "only /schema/openapi.json is served",
                "code": "not-found",
            }
        )
    return response


def create_app(
    settings: Settings | None = None, services: Services | None = None, *, worker: bool = True
) -> Litestar:
    """The ASGI application. Loads models at start-up unless `services` is given; runs an
    in-process worker unless `worker=False` (`serve --no-worker`: API only)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing(settings.otlp_endpoint)
    state = State(
        {"settings": settings, "services": services, "security": build_security(settings)}
    )

    async def on_startup(app: Litestar) -> None:
        if app.state.services is None:
            try:
                app.state.services = build_services(settings, with_worker=worker)
            except Exception as exc:
                app.state.startup_error = type(exc).__name__
                log.error("startup_failed", error=type(exc).__name__)
                raise
        await app.state.services.start()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            registry = app.state.security.registry  # SIGHUP: re-read the clients file
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, registry.reload)
        warm_up = getattr(app.state.services.narrator, "warm_up", None)
        if settings.medgemma_preload and warm_up is not None:
            await warm_up()  # load the LLM weights now rather than on the first report

    async def on_shutdown(app: Litestar) -> None:
        if app.state.services is not None:
            await app.state.services.close()

    return Litestar(
        route_handlers=[
            health,
            ready,
            metrics_page,
            RestController,
            ReviewController,
            FhirController,
            FhirReviewController,
            FhirSearchController,
            DicomWebController,
            index_page,
            static_router(settings.templates_dir),
            *AUTH_ROUTES,
            AuditController,
        ],
        guards=[auth_guard],
        state=state,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            request_context_middleware,
            body_timeout(settings.body_idle_timeout_s, settings.body_timeout_s),
            metrics_middleware,
            security_headers_middleware,
            audit_middleware,
        ],
        before_send=[security_headers_before_send],
        cors_config=cors_config(settings),
        request_max_body_size=settings.max_upload_bytes,
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="skinscreen",
            version=__version__,
            description="AI skin-condition screening: classification, reports (PDF), FHIR R4, "
            "DICOM. A screening aid, not a diagnosis.",
            # only the JSON document: the interactive pages load scripts from public CDNs
            render_plugins=[JsonRenderPlugin()],
            openapi_router=Router(
                path="/schema",
                route_handlers=[],
                opt={"public": True},
                include_in_schema=False,
                after_request=schema_not_found_as_problem,
            ),
        ),
    )


def app_factory() -> Any:
    """uvicorn --factory entry point."""
    return create_app()
