"""JobManager: follow from any point, disconnect without cancel, prompt cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from service.images import DecodedImage
from service.jobs import JobManager
from service.pipeline.case import CaseInput
from service.pipeline.domain import Classification, GateOutcome, ModelInfo, Patient, SourceImage
from service.pipeline.narrators.base import NarrationRequest
from service.pipeline.narrators.sections import split_sections
from service.pipeline.narrators.summary import summarize
from service.pipeline.run import PipelineDeps
from service.store import Store

pytestmark = pytest.mark.anyio
INFO = ModelInfo("test", "1", "0" * 64)


class FixedScreener:
    """Returns a fixed classification (the classifier itself is tested elsewhere)."""

    def screen(self, image: Image.Image) -> tuple[GateOutcome, Classification]:
        probs = {
            "Acne": 0.9,
            "Carcinoma": 0.02,
            "Eczema": 0.02,
            "Keratosis": 0.02,
            "Milia": 0.02,
            "Rosacea": 0.02,
        }
        return GateOutcome("ok"), Classification(probs, INFO)


class SlowNarrator:
    """Yields a chunk every 50 ms; records whether it was closed early."""

    info = ModelInfo("slow", "1", "1" * 64, kind="narrator")
    without_llm = False

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.produced = 0
        self.closed = asyncio.Event()

    def ensure_capacity(self) -> None:
        return None

    async def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        try:
            for i in range(self.chunks):
                await asyncio.sleep(0.05)
                self.produced += 1
                yield f"chunk {i} "
        finally:
            self.closed.set()


class PdfLikeRenderer:
    def render(self, report, image, heatmap_png=None, attachments=()):  # type: ignore[no-untyped-def]
        return b"%PDF-test " + report.case_id.encode()


def make_manager(tmp_path: Path, narrator: SlowNarrator) -> JobManager:
    deps = PipelineDeps(
        screener=FixedScreener(),
        narrator=narrator,
        fallback_narrator=narrator,
        renderer=PdfLikeRenderer(),
        summarize=summarize,
        split_sections=split_sections,
    )
    return JobManager(Store(tmp_path / "jobs.db"), deps)


def make_case(case_id: str) -> CaseInput:
    image = Image.new("RGB", (64, 64), (200, 150, 130))
    decoded = DecodedImage(image, "image/jpeg", "a" * 64, b"x" * 10)
    return CaseInput(
        case_id, decoded, SourceImage("image/jpeg", "a" * 64, 64, 64), Patient(), None, "en"
    )


async def test_follow_from_any_point(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, SlowNarrator(5))
    job = manager.start(make_case("a" * 32))
    events = await manager.wait(job)
    assert events[0].name == "accepted" and events[-1].name == "completed"
    tail = [e async for e in manager.follow(job, after=4) if e is not None]
    assert [e.seq for e in tail] == [e.seq for e in events[4:]]
    assert manager.store.get_artifact(job, "pdf") is not None


async def test_a_follower_leaving_does_not_cancel(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, SlowNarrator(6))
    job = manager.start(make_case("b" * 32))
    async for event in manager.follow(job):
        if event is not None and event.name == "report.delta":
            break  # the client disconnects mid-stream
    events = await manager.wait(job)
    assert events[-1].name == "completed"


async def test_cancel_stops_generation_promptly(tmp_path: Path) -> None:
    narrator = SlowNarrator(1000)
    manager = make_manager(tmp_path, narrator)
    job = manager.start(make_case("c" * 32))
    while narrator.produced < 2:
        await asyncio.sleep(0.01)
    assert await manager.cancel(job)
    await asyncio.wait_for(narrator.closed.wait(), 1.0)
    assert narrator.produced < 10
    record = manager.get(job)
    assert record is not None and record.status == "cancelled"
    last = manager.store.events_after(job)[-1]
    assert last.name == "error" and last.data["code"] == "cancelled"


async def test_keepalive_while_waiting(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, SlowNarrator(3))
    job = manager.start(make_case("d" * 32))
    seen_none = False
    async for event in manager.follow(job, keepalive_s=0.01):
        seen_none = seen_none or event is None
    assert seen_none


class BrokenNarrator(SlowNarrator):
    """Fails after two chunks, as a buggy backend would."""

    async def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        yield "first "
        yield "second "
        raise RuntimeError("backend exploded")


async def test_a_narrator_exception_ends_the_stream_with_an_error_event(tmp_path: Path) -> None:
    manager = make_manager(tmp_path, BrokenNarrator(0))
    job = manager.start(make_case("e" * 32))
    events = await asyncio.wait_for(manager.wait(job), 5)
    assert [e.name for e in events][-3:] == ["report.delta", "report.delta", "error"]
    problem = events[-1].data
    assert problem["status"] == 500 and problem["stage"] == "narrate"
    assert "exploded" not in problem["detail"]  # internals do not leak to clients
    record = manager.get(job)
    assert record is not None and record.status == "failed"
