"""RunResult: a run's events folded once into what the blocking doors return."""

from __future__ import annotations

from service.pipeline import events as ev
from service.pipeline.result import RunResult
from service.store import StoredEvent


def stored(*names_and_data: tuple[str, dict]) -> list[StoredEvent]:  # type: ignore[type-arg]
    return [StoredEvent(i + 1, name, data) for i, (name, data) in enumerate(names_and_data)]


def test_a_completed_run_folds_into_its_parts() -> None:
    events = stored(
        (ev.ACCEPTED, {"case_id": "c", "mode": "diagnose", "received_bytes": 3}),
        (ev.VALIDATED, {"width": 2, "height": 1, "media_type": "image/png", "gate": {"s": 1}}),
        (ev.CLASSIFIED, {"status": "ok", "reasons": [], "label": "Acne", "confidence": 0.9}),
        (ev.ANALYSIS, {"summary": "Likely acne.", "language": "en"}),
        (ev.NARRATOR_FALLBACK, {"from": "llm", "to": "kb", "reason": "down"}),
        (ev.REPORT_DELTA, {"text": "a"}),
        (ev.REPORT_COMPLETED, {"report": {"case_id": "c"}}),
        (ev.PDF_READY, {"id": "c", "size": 9, "sha256": "f", "url": "/p"}),
        (ev.COMPLETED, {"case_id": "c", "links": {"pdf": "/p"}}),
    )
    result = RunResult.fold("c", events)
    assert result.completed and result.error is None
    assert result.summary == "Likely acne." and result.report == {"case_id": "c"}
    assert result.validated is not None and result.validated["width"] == 2
    assert result.classification is not None and result.classification["label"] == "Acne"
    assert result.pdf is not None and result.pdf["size"] == 9
    assert result.links == {"pdf": "/p"}
    assert result.narrator_fallback is not None and result.narrator_fallback["to"] == "kb"


def test_an_error_event_is_the_result() -> None:
    problem = {"status": 422, "code": "invalid-image", "detail": "x"}
    result = RunResult.fold("c", stored((ev.ACCEPTED, {}), (ev.ERROR, problem)))
    assert not result.completed and result.error == problem


def test_a_run_without_a_terminal_event_is_a_failure() -> None:
    result = RunResult.fold("c", stored((ev.ACCEPTED, {}), (ev.REPORT_DELTA, {"text": "a"})))
    assert not result.completed
    assert result.error is not None and result.error["status"] == 500
