"""Scale-out of the OpenAI-compatible narrator, against real HTTP servers on loopback.

Fail-over to the next server, a concurrency limit per server with a bounded wait queue (503 at
admission when it is full), and one pooled keep-alive client per server and event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from service.errors import ServiceUnavailable
from service.pipeline.narrators.base import NarrationRequest, NarratorUnavailable
from service.pipeline.narrators.factory import build_narrator
from service.pipeline.narrators.openai_compat import OpenAICompatNarrator
from service.settings import Settings
from tests.support.factories import narration_request
from tests.support.live_server import free_port

pytestmark = pytest.mark.anyio

PIECES = ["## Observations\n\n", "A pooled ", "narrative.\n"]


def _request(case_id: str = "case-1") -> NarrationRequest:
    return narration_request(case_id)


class _Llm(ThreadingHTTPServer):
    """An OpenAI-compatible chat server: `behaviour` is "ok", "503" or "hold" (answer only
    once `release` is set). Counts TCP connections, requests and requests in flight."""

    daemon_threads = True

    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.release = threading.Event()
        self.connections = 0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away at shutdown is expected."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Llm

    def log_message(self, *args: Any) -> None:
        """Quiet."""

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        self._send(200, "application/json", b'{"object":"list","data":[{"id":"served-model"}]}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        llm = self.server
        with llm.lock:
            llm.requests += 1
            llm.in_flight += 1
            llm.max_in_flight = max(llm.max_in_flight, llm.in_flight)
        try:
            if llm.behaviour == "503":
                self._send(503, "application/json", b'{"error":"overloaded"}')
                return
            if llm.behaviour == "hold":
                llm.release.wait(20)
        finally:
            # before the last byte: the client frees its slot only after reading [DONE]
            with llm.lock:
                llm.in_flight -= 1
        events = [
            {"model": "served-model", "choices": [{"delta": {"content": piece}}]}
            for piece in PIECES
        ]
        body = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
        self._send(200, "text/event-stream", (body + "data: [DONE]\n\n").encode())


@pytest.fixture
def servers() -> Iterator[Callable[[str], _Llm]]:
    """A factory of started servers; all shut down after the test."""
    started: list[_Llm] = []

    def start(behaviour: str = "ok") -> _Llm:
        server = _Llm(behaviour)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


def _narrator(urls: str | list[str], **kwargs: Any) -> OpenAICompatNarrator:
    options: dict[str, Any] = {
        "retries": 1,
        "timeout_s": 10,
        "connect_timeout_s": 1,
        "backoff_s": 0.01,
    }
    options.update(kwargs)
    return OpenAICompatNarrator(urls, "m", **options)


async def _text(narrator: OpenAICompatNarrator, case_id: str = "case-1") -> str:
    return "".join([chunk async for chunk in narrator.stream(_request(case_id))])


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- (a) fail-over -----------------------------------------------------------------------------


async def test_a_refused_connection_fails_over_to_the_next_server(
    servers: Callable[[str], _Llm],
) -> None:
    good = servers("ok")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    narrator = _narrator([dead, good.url], backoff_s=5)  # a backoff would show in the time
    started = time.perf_counter()
    with capture_logs() as logs:
        assert await _text(narrator) == "".join(PIECES)
    assert time.perf_counter() - started < 3  # moved on at once, no backoff
    retries = [e for e in logs if e["event"] == "narrator.retry"]
    assert len(retries) == 1 and retries[0]["reason"] == "ConnectError"
    assert good.requests == 1 and narrator.info.name == "served-model"
    await narrator.aclose()


async def test_a_503_fails_over_to_the_next_server(servers: Callable[[str], _Llm]) -> None:
    busy, good = servers("503"), servers("ok")
    narrator = _narrator(f"{busy.url},{good.url}")
    assert await _text(narrator) == "".join(PIECES)
    assert (busy.requests, good.requests) == (1, 1)
    await narrator.aclose()


async def test_requests_start_round_robin(servers: Callable[[str], _Llm]) -> None:
    one, two = servers("ok"), servers("ok")
    narrator = _narrator([one.url, two.url])
    for i in range(4):
        await _text(narrator, f"case-{i}")
    assert (one.requests, two.requests) == (2, 2)
    await narrator.aclose()


async def test_unavailable_only_when_every_server_failed(servers: Callable[[str], _Llm]) -> None:
    busy = servers("503")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    narrator = _narrator([busy.url, dead], retries=1)
    with pytest.raises(NarratorUnavailable, match="servers unavailable after 4 attempts"):
        await _text(narrator)
    assert busy.requests == 2  # one per round, 1 + 1 retry round
    await narrator.aclose()


def test_identity_is_stable_over_the_url_list() -> None:
    a, b = "http://a:1/v1", "http://b:2/v1"
    forward, backward = _narrator([a, b]), _narrator(f"{b}/, {a}")
    assert forward.info == backward.info and backward.base_urls == (b, a)
    single = _narrator(a)
    assert single.info.sha256 == hashlib.sha256(f"{a}|m".encode()).hexdigest()  # as before
    assert single.info.sha256 != forward.info.sha256


def test_the_factory_passes_the_scale_out_settings() -> None:
    narrator = build_narrator(
        Settings(
            narrator="openai",
            openai_base_urls="http://a:1/v1, http://b:2/v1/",
            openai_max_concurrency=3,
            openai_queue_size=5,
        )
    )
    assert isinstance(narrator, OpenAICompatNarrator)
    assert narrator.base_urls == ("http://a:1/v1", "http://b:2/v1")
    assert (narrator.max_concurrency, narrator.queue_size) == (3, 5)
    alone = build_narrator(Settings(narrator="openai", openai_base_url="http://h:1/v1/"))
    assert isinstance(alone, OpenAICompatNarrator)
    assert alone.base_urls == ("http://h:1/v1",)
    assert (alone.max_concurrency, alone.queue_size) == (8, 16)


# --- (b) concurrency limit -----------------------------------------------------------------


async def test_at_most_max_concurrency_requests_are_in_flight(
    servers: Callable[[str], _Llm],
) -> None:
    held = servers("hold")
    narrator = _narrator(held.url, max_concurrency=2, queue_size=4)
    tasks = [asyncio.create_task(_text(narrator, f"case-{i}")) for i in range(3)]
    await _until(lambda: held.requests == 2 and narrator.load == (2, 1))
    await asyncio.sleep(0.3)
    assert held.requests == 2 and held.in_flight == 2  # the third waits on our side
    assert narrator.load == (2, 1)
    held.release.set()
    assert await asyncio.gather(*tasks) == ["".join(PIECES)] * 3
    assert held.requests == 3 and held.max_in_flight == 2
    assert narrator.load == (0, 0)
    await narrator.aclose()


# --- (c) admission ---------------------------------------------------------------------------


async def test_ensure_capacity_refuses_when_every_slot_and_the_queue_are_taken(
    servers: Callable[[str], _Llm],
) -> None:
    one, two = servers("hold"), servers("hold")
    narrator = _narrator([one.url, two.url], max_concurrency=1, queue_size=1)
    narrator.ensure_capacity()  # nothing in flight
    tasks = [asyncio.create_task(_text(narrator, "case-0"))]
    tasks.append(asyncio.create_task(_text(narrator, "case-1")))
    await _until(lambda: one.requests == 1 and two.requests == 1)  # one slot on each server
    narrator.ensure_capacity()  # every slot taken, but the queue is empty
    tasks.append(asyncio.create_task(_text(narrator, "case-2")))
    await _until(lambda: narrator.load == (2, 1))
    with pytest.raises(ServiceUnavailable) as refused:
        narrator.ensure_capacity()
    assert refused.value.status == 503 and 1 <= refused.value.retry_after <= 600
    with pytest.raises(NarratorUnavailable, match="queue is full"):
        await _text(narrator, "case-3")  # a run that got past admission anyway falls back
    one.release.set()
    two.release.set()
    assert await asyncio.gather(*tasks) == ["".join(PIECES)] * 3
    narrator.ensure_capacity()
    assert one.requests + two.requests == 3
    await narrator.aclose()


def test_ensure_capacity_outside_an_event_loop_is_a_no_op() -> None:
    _narrator("http://127.0.0.1:1/v1").ensure_capacity()


# --- (d) pooled client -----------------------------------------------------------------------


def test_one_keep_alive_connection_per_loop_and_a_fresh_client_in_a_new_loop(
    servers: Callable[[str], _Llm],
) -> None:
    llm = servers("ok")
    narrator = _narrator(llm.url)

    async def twice() -> list[str]:
        return [await _text(narrator, "case-a"), await _text(narrator, "case-b")]

    assert asyncio.run(twice()) == ["".join(PIECES)] * 2
    assert (llm.requests, llm.connections) == (2, 1)  # the second stream reused the connection

    async def again() -> tuple[str, str]:  # a new `asyncio.run`, as the CLI does
        name = (await narrator.refresh_info()).name
        text = await _text(narrator, "case-c")
        await narrator.aclose()
        return name, text

    assert asyncio.run(again()) == ("served-model", "".join(PIECES))
    assert (llm.requests, llm.connections) == (3, 2)  # one new connection for the new loop


async def test_aclose_closes_the_clients_and_a_later_stream_opens_new_ones(
    servers: Callable[[str], _Llm],
) -> None:
    llm = servers("ok")
    narrator = _narrator(llm.url)
    await _text(narrator)
    await narrator.aclose()
    await narrator.aclose()  # idempotent
    assert await _text(narrator) == "".join(PIECES)
    assert (llm.requests, llm.connections) == (2, 2)
    await narrator.aclose()
