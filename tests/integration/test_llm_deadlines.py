"""LLM deadlines and fallback against real misbehaving OpenAI-compatible servers on loopback.

Each fault — refused connection, a server that accepts and hangs, one that stalls after the
first token, one that trickles SSE keep-alive comments, one that ends early — must end in the
knowledge narrative with the `narrator_fallback` notice and a `narrator.fallback` event, well
within 30 s under short deadlines; never a 500, never a truncated narrative. Text already sent
is superseded by a `report.reset` event. The last test goes through the real HTTP service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.pipeline import events as ev
from service.pipeline.narration import Narration, narrate
from service.pipeline.narrators.deadlines import Deadlines
from service.pipeline.narrators.factory import knowledge_fallback
from service.pipeline.narrators.knowledge import compose_narrative
from service.pipeline.narrators.openai_compat import OpenAICompatNarrator
from tests.sse_client import SseEvent, iter_sse
from tests.support.factories import narration_request
from tests.support.faulty_llm import FIRST, FaultyLlm
from tests.support.live_server import LiveServer, free_port, start_server, stop_server

SHORT = Deadlines(first_token_s=2.0, inter_token_s=1.0, total_s=6.0)
#: A generous hang guard, not a timing assertion.
HANG_GUARD_S = 30.0


def _narrator(url: str, deadlines: Deadlines = SHORT) -> OpenAICompatNarrator:
    narrator = OpenAICompatNarrator(
        url, "faulty-model", retries=1, connect_timeout_s=1.0, timeout_s=60.0,
        send_image=False, deadlines=deadlines,
    )  # fmt: skip
    narrator.backoff_s = 0.05
    return narrator


async def _narrate(narrator: OpenAICompatNarrator) -> tuple[list[ev.Event], Narration, float]:
    request = narration_request()
    out = Narration(narrator)
    started = time.monotonic()
    events = [e async for e in narrate(narrator, knowledge_fallback(), request, out)]
    seconds = time.monotonic() - started
    assert narrator.load == (0, 0)  # the server slot was given back
    await narrator.aclose()
    return events, out, seconds


def _text_after_last_reset(events: list[ev.Event]) -> str:
    names = [e.name for e in events]
    start = len(names) - names[::-1].index(ev.REPORT_RESET) if ev.REPORT_RESET in names else 0
    return "".join(e.data["text"] for e in events[start:] if e.name == ev.REPORT_DELTA)  # type: ignore[typeddict-item]


def _assert_fell_back(events: list[ev.Event], out: Narration, *, streamed: bool) -> str:
    names = [e.name for e in events]
    assert names.count(ev.NARRATOR_FALLBACK) == 1
    fallback = events[names.index(ev.NARRATOR_FALLBACK)].data
    assert fallback["to"] == "skinscreen-knowledge-base"  # type: ignore[typeddict-item]
    assert fallback["partial_discarded"] is streamed  # type: ignore[typeddict-item]
    assert (ev.REPORT_RESET in names) is streamed
    assert out.narrator is knowledge_fallback() and out.notices == ["narrator_fallback"]
    assert out.text == compose_narrative(narration_request())
    assert _text_after_last_reset(events) == out.text  # what a client shows is the report
    return str(fallback["reason"])  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("behaviour", "streamed", "reason"),
    [
        ("hang", False, "no first token within 2 s"),
        ("keepalive_only", False, "no first token within 2 s"),
        ("stall", True, "no token for 1 s"),
        ("keepalive", True, "no token for 1 s"),
        ("truncated", True, "ended early (no end-of-stream marker)"),
    ],
)
def test_a_misbehaving_server_falls_back_to_knowledge(
    behaviour: str, streamed: bool, reason: str
) -> None:
    with FaultyLlm(behaviour) as llm:
        events, out, seconds = asyncio.run(_narrate(_narrator(llm.url)))
    assert reason in _assert_fell_back(events, out, streamed=streamed)
    assert seconds < HANG_GUARD_S
    if streamed:
        first = next(e for e in events if e.name == ev.REPORT_DELTA)
        assert first.data["text"] == FIRST or behaviour == "truncated"  # type: ignore[typeddict-item]
    print(f"{behaviour}: fell back after {seconds:.2f} s")


def test_a_refused_connection_falls_back_at_once() -> None:
    events, out, seconds = asyncio.run(_narrate(_narrator(f"http://127.0.0.1:{free_port()}/v1")))
    assert "unavailable after 2 attempts" in _assert_fell_back(events, out, streamed=False)
    assert seconds < HANG_GUARD_S
    print(f"refused: fell back after {seconds:.2f} s")


def test_keepalive_comments_do_not_extend_the_overall_deadline() -> None:
    deadlines = Deadlines(first_token_s=2.0, inter_token_s=5.0, total_s=1.5)
    with FaultyLlm("keepalive") as llm:
        events, out, seconds = asyncio.run(_narrate(_narrator(llm.url, deadlines)))
    assert "not finished within 1.5 s" in _assert_fell_back(events, out, streamed=True)
    assert seconds < HANG_GUARD_S


def test_a_narrative_missing_sections_is_not_accepted() -> None:
    """A stream that ends properly ([DONE]) with only two sections is a failure too."""
    with FaultyLlm("text", text="## Observations\n\nAcne.\n\n## Red flags\n\n- Bleeding\n") as llm:
        events, out, _ = asyncio.run(_narrate(_narrator(llm.url)))
    reason = _assert_fell_back(events, out, streamed=True)
    assert "missing_section: differential" in reason and "missing_section: follow_up" in reason


# --- through the real HTTP service ---------------------------------------------------------


@pytest.fixture(scope="module")
def stalling_llm() -> Iterator[FaultyLlm]:
    with FaultyLlm("stall") as llm:
        yield llm


@pytest.fixture(scope="module")
def stalled_service(
    tmp_path_factory: pytest.TempPathFactory, stalling_llm: FaultyLlm
) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("llm-stall"),
        {
            "SKINSCREEN_NARRATOR": "openai",
            "SKINSCREEN_OPENAI_BASE_URL": stalling_llm.url,
            "SKINSCREEN_OPENAI_SEND_IMAGE": "false",
            "SKINSCREEN_LLM_FIRST_TOKEN_S": "3",
            "SKINSCREEN_LLM_INTER_TOKEN_S": "1.5",
            "SKINSCREEN_LLM_DEADLINE_S": "10",
        },
    )
    yield server
    stop_server(server)


def test_a_stalled_llm_falls_back_end_to_end(
    stalled_service: LiveServer, stalling_llm: FaultyLlm, skin_jpeg: bytes, tmp_path: Path
) -> None:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{stalled_service.url}/api/v1/diagnose-stream",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        data={"language": "en"},
        timeout=HANG_GUARD_S,
    ) as response:
        assert response.status_code == 200
        events = [e for e in iter_sse(response) if isinstance(e, SseEvent)]
    seconds = time.monotonic() - started
    names = [e.name for e in events]
    assert stalling_llm.requests >= 1 and names[-1] == "completed", names
    delta = names.index("report.delta")
    assert events[delta].data["text"] == FIRST  # the LLM's first token reached the client …
    assert names[delta + 1 : delta + 3] == ["narrator.fallback", "report.reset"]  # … then reset
    fallback = events[delta + 1].data
    assert fallback["partial_discarded"] is True and "no token for 1.5 s" in fallback["reason"]
    report = events[names.index("report.completed")].data["report"]
    assert report["narrator"]["without_llm"] is True
    assert report["notices"] == ["narrator_fallback"]
    after_reset = "".join(e.data["text"] for e in events[delta + 3 :] if e.name == "report.delta")
    assert after_reset == report["narrative"] and FIRST not in report["narrative"]
    stored = httpx.get(stalled_service.url + events[-1].data["links"]["report"]).json()
    assert stored["narrative"] == report["narrative"]
    assert seconds < HANG_GUARD_S
    print(f"end to end: completed after {seconds:.2f} s")
