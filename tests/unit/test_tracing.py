"""OpenTelemetry: one span per pipeline stage when tracing is on, with no patient data."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service import tracing
from service.intake.cases import Limits
from service.jobs import JobManager
from service.store import SqliteStore
from service.worker import Worker
from tests.support.factories import fake_deps, intake

pytestmark = pytest.mark.anyio


async def test_a_diagnose_run_leaves_a_span_per_stage(tmp_path: object) -> None:
    exporter = InMemorySpanExporter()
    tracing.install(SimpleSpanProcessor(exporter))
    try:
        deps = fake_deps()
        store = SqliteStore(tmp_path / "jobs.db")  # type: ignore[operator]
        worker = Worker(store, deps, Limits(), lease_s=3)
        await worker.start()
        jobs = JobManager(store, deps, Limits(), worker=worker)
        made = intake(patient_name="Hong Gildong", history="itchy rash")
        result = await (await jobs.submit(made.case, kind="diagnose")).result()
        await worker.stop(0)
        assert result.completed
    finally:
        tracing._tracer = None
    spans = exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert {"stage.decode", "stage.screen", "stage.narrate", "stage.render"} <= names
    for span in spans:
        assert span.end_time is not None and span.start_time is not None
        assert span.end_time >= span.start_time
        text = repr(dict(span.attributes or {}))
        assert "Hong" not in text and "itchy" not in text


def test_tracing_is_off_without_an_endpoint() -> None:
    assert tracing.configure_tracing(None) is False
    with tracing.span("nothing"):
        pass
    tracing.record("nothing", 0.1)  # a no-op
