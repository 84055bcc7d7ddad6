"""Optional OpenTelemetry spans: one per pipeline stage, when an OTLP endpoint is configured.

Without the `otel` extra or an endpoint, `span()` costs nothing. Span attributes come from
fixed vocabularies (stage names) — never patient data, report text or identifiers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from service.logging import get_logger

log = get_logger(__name__)
_tracer: Any = None


def configure_tracing(endpoint: str | None, service_name: str = "skinscreen") -> bool:
    """Export spans to `endpoint` (OTLP/HTTP); False when off or the extra is missing."""
    if not endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing.unavailable", reason="install the `otel` extra")
        return False
    install(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)), service_name)
    log.info("tracing.enabled")
    return True


def install(processor: Any, service_name: str = "skinscreen") -> None:
    """Use a span processor (the OTLP exporter, or an in-memory one in tests)."""
    global _tracer
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    _tracer = provider.get_tracer("skinscreen")


def record(name: str, seconds: float, **attributes: str | int | float | bool) -> None:
    """A finished span of `seconds` ending now (stages are timed where they run, also across
    an async generator's yields, so the span is written afterwards)."""
    if _tracer is None:
        return
    end = time.time_ns()
    span = _tracer.start_span(name, start_time=end - int(seconds * 1e9), attributes=attributes)
    span.end(end_time=end)


@contextlib.contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[None]:
    """A span around the block when tracing is on; nothing otherwise."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield
