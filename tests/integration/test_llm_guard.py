"""The output guard between a real OpenAI-compatible server on loopback and the report.

A text naming a drug is replaced by the knowledge narrative (fallback); a text without the
urgent line an urgent referral needs is repaired; through the real service, a reassurance is
cut from the report, its JSON and its PDF, and the stream says the earlier text is superseded.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from service.pipeline import events as ev
from service.pipeline.narration import Narration, narrate
from service.pipeline.narrators import guard
from service.pipeline.narrators.base import NarrationRequest
from service.pipeline.narrators.factory import knowledge_fallback
from service.pipeline.narrators.knowledge import compose_narrative
from service.pipeline.narrators.openai_compat import OpenAICompatNarrator
from service.pipeline.narrators.sections import split_sections
from tests.sse_client import SseEvent, iter_sse
from tests.support.factories import classification, narration_request
from tests.support.faulty_llm import FaultyLlm
from tests.support.live_server import LiveServer, start_server, stop_server

CAREFUL = """## Observations

The image is consistent with {finding}. This is a screening aid, not a diagnosis.

## Differential diagnosis

- Seborrhoeic keratosis
- Eczema

## Red flags

- Bleeding, rapid growth or a sore that does not heal

## Recommended next steps

- {advice}

## Follow-up

Follow the plan agreed with the clinician.
"""


def _request(label: str, p: float) -> NarrationRequest:
    return narration_request(result=classification(label, p))


async def _narrate(url: str, request: NarrationRequest) -> tuple[list[ev.Event], Narration]:
    narrator = OpenAICompatNarrator(url, "faulty-model", retries=0, send_image=False)
    out = Narration(narrator)
    events = [e async for e in narrate(narrator, knowledge_fallback(), request, out)]
    await narrator.aclose()
    return events, out


def _after_reset(events: list[ev.Event]) -> str:
    names = [e.name for e in events]
    start = names.index(ev.REPORT_RESET) + 1
    return "".join(e.data["text"] for e in events[start:] if e.name == ev.REPORT_DELTA)  # type: ignore[typeddict-item]


def test_a_drug_name_falls_back_to_the_knowledge_narrative() -> None:
    text = CAREFUL.format(
        finding="acne", advice="A clinician may prescribe doxycycline for a few months."
    )
    request = _request("Acne", 0.9)
    with FaultyLlm("text", text=text) as llm:
        events, out = asyncio.run(_narrate(llm.url, request))
    names = [e.name for e in events]
    assert names.count(ev.REPORT_RESET) == 1
    assert names.index(ev.NARRATOR_FALLBACK) < names.index(ev.REPORT_RESET)
    fallback = events[names.index(ev.NARRATOR_FALLBACK)].data
    assert "drug: doxycycline" in fallback["reason"]  # type: ignore[typeddict-item]
    assert fallback["partial_discarded"] is True  # type: ignore[typeddict-item]
    assert out.narrator is knowledge_fallback() and out.notices == ["narrator_fallback"]
    assert out.text == compose_narrative(request) == _after_reset(events)
    assert "doxycycline" not in out.text.casefold()


def test_a_missing_urgent_line_is_repaired_in_place() -> None:
    text = CAREFUL.format(
        finding="a keratinocyte skin cancer", advice="See a dermatologist for an assessment."
    )
    request = _request("Carcinoma", 0.8)
    assert request.referral.level == "urgent"
    with FaultyLlm("text", text=text) as llm:
        events, out = asyncio.run(_narrate(llm.url, request))
    names = [e.name for e in events]
    assert ev.NARRATOR_FALLBACK not in names and names.count(ev.REPORT_RESET) == 1
    reset = events[names.index(ev.REPORT_RESET)].data
    assert reset == {"reason": "narrative_repaired"}
    assert out.narrator.info.name == "faulty-model" and out.notices == ["narrative_repaired"]
    assert "".join(e.data["text"] for e in events[: names.index(ev.REPORT_RESET)]) == text  # type: ignore[typeddict-item]
    assert out.text == _after_reset(events)
    recommendations = split_sections(out.text, "en")["recommendations"].splitlines()
    assert recommendations == [
        f"- {guard.urgent_line('en', request.referral)}",
        "- See a dermatologist for an assessment.",
    ]
    assert guard.check(out.text, "en", request.referral).action == "accept"


# --- through the real HTTP service ---------------------------------------------------------

REASSURING = CAREFUL.format(
    finding="acne", advice="Wash gently twice a day. This is harmless, nothing to worry about."
)


@pytest.fixture(scope="module")
def reassuring_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with FaultyLlm("text", text=REASSURING) as llm:
        server = start_server(
            tmp_path_factory.mktemp("llm-guard"),
            {
                "SKINSCREEN_NARRATOR": "openai",
                "SKINSCREEN_OPENAI_BASE_URL": llm.url,
                "SKINSCREEN_OPENAI_SEND_IMAGE": "false",
            },
        )
        yield server
        stop_server(server)


def test_a_reassurance_never_reaches_the_report_or_the_pdf(
    reassuring_service: LiveServer, skin_jpeg: bytes
) -> None:
    with httpx.stream(
        "POST",
        f"{reassuring_service.url}/api/v1/diagnose-stream",
        files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
        data={"language": "en"},
        timeout=30,
    ) as response:
        events = [e for e in iter_sse(response) if isinstance(e, SseEvent)]
    names = [e.name for e in events]
    assert names[-1] == "completed" and "narrator.fallback" not in names, names
    reset = names.index("report.reset")
    streamed = "".join(e.data["text"] for e in events[:reset] if e.name == "report.delta")
    assert "harmless" in streamed  # the raw text streamed live …
    report = events[names.index("report.completed")].data["report"]
    after = "".join(e.data["text"] for e in events[reset:] if e.name == "report.delta")
    assert after == report["narrative"]  # … and was superseded by the checked text
    assert "harmless" not in report["narrative"] and "worry" not in report["narrative"]
    assert "Wash gently twice a day." in report["sections"]["recommendations"]
    assert report["notices"] == ["narrative_repaired"]
    assert report["narrator"]["without_llm"] is False
    links = events[-1].data["links"]
    stored = httpx.get(reassuring_service.url + links["report"]).json()
    assert stored["narrative"] == report["narrative"]
    pdf = httpx.get(reassuring_service.url + links["pdf"]).content
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    assert "harmless" not in text and "standard wording" in text  # the notice, localized
