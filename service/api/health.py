"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from service import __version__


@get("/health", tags=["health"], sync_to_thread=False)
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok", "version": __version__}


@get("/ready", tags=["health"], sync_to_thread=False)
def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Readiness: the classifier is loaded (503 until then, or if loading failed)."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        error = getattr(request.app.state, "startup_error", None)
        body = {"status": "starting" if error is None else "failed", "error": error}
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    return Response(
        {
            "status": "ready",
            "classifier": {"backend": services.backend, **services.classifier_info.as_dict()},
            "narrator": services.narrator.info.as_dict(),
        }
    )
