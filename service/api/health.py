"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from service import __version__, metrics
from service.security.scopes import READ_METRICS


@get("/health", tags=["health"], sync_to_thread=False, opt={"public": True})
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok", "version": __version__}


@get("/ready", tags=["health"], opt={"public": True})
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Readiness: the classifier is loaded, the job store answers and takes a small write
    (cached a few seconds: a full disk or a read-only data directory is 503 until it clears)."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        error = getattr(request.app.state, "startup_error", None)
        body = {"status": "starting" if error is None else "failed", "error": error}
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    database = await services.store.ping()
    writable = database and await services.store.writable()
    ok = database and writable
    return Response(
        {
            "status": "ready" if ok else "degraded",
            "classifier": {"backend": services.backend, **services.classifier_info.as_dict()},
            "narrator": services.narrator.info.as_dict(),
            "store": {"backend": services.store.backend, "ok": database, "writable": writable},
            "worker": services.worker is not None,
        },
        status_code=200 if ok else 503,
        headers=None if ok else {"Retry-After": "5"},
    )


@get("/metrics", tags=["health"], include_in_schema=False, opt={"scopes": [READ_METRICS]})
async def metrics_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus exposition (jobs by state are read from the shared store at scrape time)."""
    services = getattr(request.app.state, "services", None)
    if services is not None:
        states = await services.store.job_states()
        metrics.set_job_states(states)
        metrics.set_queue_depth(states.get("queued", 0))
    body, content_type = metrics.render_metrics()
    return Response(body, media_type=content_type)
