"""Prometheus metrics (`GET /metrics`), multiprocess-safe, with no patient data in any label.

Label values come only from fixed vocabularies: route TEMPLATES (never raw paths: ids could
identify someone), methods, status codes, job kinds/states, stages, configured narrator names,
admission reasons; other text is squeezed through `_token` (a short word, else "other").

With `PROMETHEUS_MULTIPROC_DIR` set (before prometheus_client is first imported, as the client
requires) every worker writes its samples to that directory and `render_metrics` aggregates
them with a `MultiProcessCollector`; otherwise the default in-process registry is served.
When a worker exits, call `prometheus_client.multiprocess.mark_process_dead(pid)` (live gauges).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from service import tracing

if TYPE_CHECKING:  # typing only: the pipeline (below litestar) may import this module
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
OTHER = "other"
STAGES = frozenset({"decode", "screen", "narrate", "render", "package"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,39}")
_seen_states: set[str] = set()

# Buckets in seconds (rate: tokens/s); stages include CPU LLM narration, waits can be long.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
_RATE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 500)

HTTP_REQUESTS = Counter(
    "skinscreen_http_requests",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "skinscreen_http_request_seconds",
    "HTTP request duration until the response ended (streams included).",
    ["route", "method"],
    buckets=_REQUEST_BUCKETS,
)
JOBS_SUBMITTED = Counter("skinscreen_jobs_submitted", "Jobs submitted, by kind.", ["kind"])
JOBS_FINISHED = Counter(
    "skinscreen_jobs_finished", "Jobs finished, by kind and final status.", ["kind", "status"]
)
JOBS_IN_STATE = Gauge(
    "skinscreen_jobs_in_state",
    "Jobs in the shared store by state (latest snapshot from any live process).",
    ["state"],
    multiprocess_mode="livemostrecent",
)
QUEUE_DEPTH = Gauge(
    "skinscreen_queue_depth",
    "Runs waiting for capacity (summed over live processes).",
    multiprocess_mode="livesum",
)
QUEUE_WAIT_SECONDS = Histogram(
    "skinscreen_queue_wait_seconds", "Time a run waited before starting.", buckets=_WAIT_BUCKETS
)
STAGE_SECONDS = Histogram(
    "skinscreen_stage_seconds", "Pipeline stage duration.", ["stage"], buckets=_STAGE_BUCKETS
)
NARRATOR_FALLBACKS = Counter(
    "skinscreen_narrator_fallbacks",
    "Narrator fallbacks, by configured narrator names.",
    ["from_narrator", "to_narrator"],
)
LLM_FIRST_TOKEN_SECONDS = Histogram(
    "skinscreen_llm_first_token_seconds",
    "Time from LLM request to its first token.",
    buckets=_FIRST_TOKEN_BUCKETS,
)
LLM_TOKENS_PER_SECOND = Histogram(
    "skinscreen_llm_tokens_per_second", "LLM generation rate (tokens/s).", buckets=_RATE_BUCKETS
)
LEASE_EXPIRIES = Counter("skinscreen_lease_expiries", "Job leases that expired (stale heartbeat).")
JOB_RETRIES = Counter("skinscreen_job_retries", "Job runs retried.")
ADMISSION_REJECTIONS = Counter(
    "skinscreen_admission_rejections", "Submissions refused at admission, by reason.", ["reason"]
)


def _token(value: object) -> str:
    """A label value from a closed-ish vocabulary: a short lowercase word, else "other"."""
    text = str(value).strip().lower()
    return text if _TOKEN.fullmatch(text) else OTHER


def _method(method: object) -> str:
    text = str(method).upper()
    return text if text in METHODS else OTHER


def _status(status: object) -> str:
    code = status if isinstance(status, int) else 0
    return str(code) if 100 <= code <= 599 else "0"


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """One finished HTTP request. `route` must be a template (see `route_label`)."""
    method_label = _method(method)
    HTTP_REQUESTS.labels(route=route, method=method_label, status=_status(status)).inc()
    HTTP_REQUEST_SECONDS.labels(route=route, method=method_label).observe(max(seconds, 0.0))


def observe_stage(stage: str, seconds: float) -> None:
    name = stage if stage in STAGES else OTHER
    STAGE_SECONDS.labels(stage=name).observe(max(seconds, 0.0))
    tracing.record(f"stage.{name}", max(seconds, 0.0), stage=name)


@contextmanager
def timed_stage(stage: str) -> Iterator[None]:
    """Time the block as pipeline stage `stage` (recorded also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        observe_stage(stage, time.perf_counter() - started)


def job_submitted(kind: str) -> None:
    JOBS_SUBMITTED.labels(kind=_token(kind)).inc()


def job_finished(kind: str, status: str) -> None:
    JOBS_FINISHED.labels(kind=_token(kind), status=_token(status)).inc()


def set_job_states(counts: dict[str, int]) -> None:
    """Snapshot of job counts by state, from the store (states absent from `counts` are 0)."""
    fresh = {_token(state): n for state, n in counts.items()}
    for state in _seen_states - fresh.keys():
        JOBS_IN_STATE.labels(state=state).set(0)
    for state, n in fresh.items():
        JOBS_IN_STATE.labels(state=state).set(n)
    _seen_states.update(fresh)


def set_queue_depth(n: int) -> None:
    QUEUE_DEPTH.set(max(n, 0))


def observe_queue_wait(seconds: float) -> None:
    QUEUE_WAIT_SECONDS.observe(max(seconds, 0.0))


def fallback(from_: str, to: str) -> None:
    NARRATOR_FALLBACKS.labels(from_narrator=_token(from_), to_narrator=_token(to)).inc()


def llm_first_token(seconds: float) -> None:
    LLM_FIRST_TOKEN_SECONDS.observe(max(seconds, 0.0))


def llm_rate(tokens_per_s: float) -> None:
    LLM_TOKENS_PER_SECOND.observe(max(tokens_per_s, 0.0))


def lease_expired() -> None:
    LEASE_EXPIRIES.inc()


def job_retried() -> None:
    JOB_RETRIES.inc()


def admission_rejected(reason: str) -> None:
    ADMISSION_REJECTIONS.labels(reason=_token(reason)).inc()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def serve_metrics(host: str, port: int) -> None:
    """Expose this process's metrics on `http://host:port/` (the `skinscreen worker` process,
    which has no HTTP API of its own), in a daemon thread."""
    path = multiprocess_dir()
    registry = REGISTRY
    if path is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)


def render_metrics() -> tuple[bytes, str]:
    """The scrape body and its content type, aggregated over processes in multiprocess mode."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def route_label(scope: Scope | dict[str, Any]) -> str:
    """The matched route's template (`/api/v1/jobs/{job_id}`), never the raw path.

    Litestar's router sets `scope["path_template"]` (the route's `path_format`: parameter names
    without their types) and `scope["route_handler"]` once a route matched; before routing, or
    when nothing matched (404/405), there is no template and the label is "unmatched".
    """
    template = scope.get("path_template")
    if isinstance(template, str) and template.startswith("/") and scope.get("route_handler"):
        return template
    return UNMATCHED


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Time every HTTP request (until its response ends, so SSE streams count in full) and
    record route template, method and status. `/metrics` itself is not recorded."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]  # a plain "http" from the server (ScopeType is a str enum)
        if kind != "http" or scope.get("path") == METRICS_PATH:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except BaseException as exc:
            if status["code"] == 0:  # no response started: client gone (499) or server error
                status["code"] = 499 if isinstance(exc, asyncio.CancelledError) else 500
            raise
        finally:
            route = route_label(scope)
            if route != METRICS_PATH:
                observe_request(
                    route, str(scope.get("method")), status["code"], time.perf_counter() - started
                )

    return middleware
