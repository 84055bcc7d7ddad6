"""A narrator that streams from OpenAI-compatible servers (vLLM, Ollama, llama.cpp, TGI).

`POST {base_url}/chat/completions` with `stream: true`; the reply is Server-Sent Events whose
`data:` lines carry `choices[0].delta.content`, ended by `data: [DONE]`. One or several base
URLs, each with one pooled keep-alive `httpx.AsyncClient` per event loop and at most
`max_concurrency` requests in flight (`ServerSlots`): a vLLM server batches many reports at
once but is not flooded. Beyond that runs wait in a bounded queue; `ensure_capacity` answers
503 + Retry-After once every slot is taken and `queue_size` runs wait. Requests start at the
next server in turn, preferring one with a free slot.

Failures before the first chunk (connection refused, timeout, 408/425/429/5xx) move on to the
next server at once; after a round over all, a backoff and another round (`retries` more), then
`NarratorUnavailable`: the run falls back to the knowledge narrator; other 4xx are not retried.
After the first chunk: a failure raises `NarratorStreamError`, a stream ending without `[DONE]`
or `finish_reason: stop` (or at the token limit) `NarratorTruncated`. All of it runs under
`deadlines.bounded`. `info.sha256`: SHA-256 of the sorted base URLs and the model joined by
"|"; `info.name`: the model the server reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import httpx
import structlog

from service import metrics
from service.errors import ServiceUnavailable
from service.pipeline.domain import ModelInfo
from service.pipeline.narrators.base import NarrationRequest, NarratorTruncated, NarratorUnavailable
from service.pipeline.narrators.base import NarratorStreamError as NarratorStreamError
from service.pipeline.narrators.chat_sse import Delta, parse_line
from service.pipeline.narrators.deadlines import Deadlines, bounded
from service.pipeline.narrators.prompts import build_messages
from service.pipeline.narrators.server_slots import LoopLocal, ServerSlots, split_urls

log = structlog.get_logger(__name__)

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: How long to read on after `[DONE]` so the connection goes back to the pool.
_DRAIN_S = 1.0


class _Retryable(Exception):
    """A failure before the first chunk that is worth another attempt."""


#: A request at its first chunk: server, response, its lines, first delta, perf_counter then.
_Opened = tuple[str, httpx.Response, AsyncIterator[str], Delta, float]


class OpenAICompatNarrator:
    """Streams the report from OpenAI-compatible chat-completions endpoints. `base_url`: one
    URL, a comma-separated list or a sequence; `max_concurrency` per server, per event loop."""

    without_llm = False

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        retries: int = 2,
        max_tokens: int = 768,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        send_image: bool = True,
        backoff_s: float = 0.5,
        max_concurrency: int = 8,
        queue_size: int = 16,
        deadlines: Deadlines | None = None,
    ) -> None:
        urls = split_urls(base_url)
        if not urls or max_concurrency < 1 or queue_size < 0:
            raise ValueError("needs a base URL, max_concurrency ≥ 1 and queue_size ≥ 0")
        self.base_urls, self.base_url, self.model = urls, urls[0], model
        self.retries, self.max_tokens, self.send_image = retries, max_tokens, send_image
        self.backoff_s, self.max_concurrency, self.queue_size = (
            backoff_s,
            max_concurrency,
            queue_size,
        )
        self.deadlines = deadlines or Deadlines()
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._limits = httpx.Limits(
            max_connections=max_concurrency + 4, max_keepalive_connections=max_concurrency
        )
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._transport = transport
        digest = hashlib.sha256("|".join([*sorted(urls), model]).encode()).hexdigest()
        self.info = ModelInfo(name=model, version="remote", sha256=digest, kind="narrator")
        self._slots = LoopLocal(lambda: ServerSlots(urls, max_concurrency))
        self._clients: LoopLocal[dict[str, httpx.AsyncClient]] = LoopLocal(dict)
        self._turn = itertools.count()
        self._where = {url: httpx.URL(url).netloc.decode() for url in urls}  # for logs

    def _client(self, url: str) -> httpx.AsyncClient:
        """The running loop's pooled keep-alive client of `url` (made on first use)."""
        clients = self._clients.get()
        client = clients.get(url)
        if client is None or client.is_closed:
            client = clients[url] = httpx.AsyncClient(
                base_url=url,
                headers=self._headers,
                timeout=self._timeout,
                limits=self._limits,
                transport=self._transport,
            )
        return client

    @property
    def load(self) -> tuple[int, int]:
        """(in flight, waiting for a slot) in the running event loop; (0, 0) outside one."""
        slots = self._slots.peek()
        return (slots.in_flight, slots.waiting) if slots else (0, 0)

    async def aclose(self) -> None:
        """Close the running loop's pooled clients (a later stream opens new ones). Call it
        before a loop ends; otherwise its connections close only when garbage-collected."""
        clients = self._clients.peek() or {}
        for url in list(clients):
            await clients.pop(url).aclose()

    def ensure_capacity(self) -> None:
        """503 + Retry-After when every server's `max_concurrency` slots are taken and
        `queue_size` runs already wait (this process's view)."""
        slots = self._slots.peek()
        if slots is not None and slots.full(self.queue_size):
            raise ServiceUnavailable(
                "The language model is busy; try again later.", retry_after=slots.retry_after()
            )

    def _named(self, model: str | None) -> None:
        """Record the model name the server reports (sha256 stays the configured identity)."""
        if model and model != self.info.name:
            self.info = dataclasses.replace(self.info, name=model)

    async def refresh_info(self) -> ModelInfo:
        """Ask `GET /models` (first server that answers) which model is served, else keep the
        configured name. Never raises: an unreachable server is found out by `stream`."""
        for url in self.base_urls:
            try:
                response = await self._client(url).get("/models")
                response.raise_for_status()
                data = response.json().get("data", [])
                ids = [str(item["id"]) for item in data if "id" in item]
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
                continue
            self._named(self.model if self.model in ids else (ids[0] if ids else None))
            break
        return self.info

    def _payload(self, request: NarrationRequest) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": build_messages(request, include_image=self.send_image),
            "stream": True,
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }

    async def _attempt(
        self, url: str, payload: dict[str, Any]
    ) -> tuple[httpx.Response, AsyncIterator[str], Delta]:
        """One request up to its first text chunk; `_Retryable` for what another try may fix."""
        client = self._client(url)
        response: httpx.Response | None = None
        try:
            response = await client.send(
                client.build_request("POST", "/chat/completions", json=payload), stream=True
            )
            if response.status_code >= 400:
                await response.aread()
                status = response.status_code
                if status in _RETRY_STATUS:
                    raise _Retryable(f"HTTP {status}")
                raise NarratorUnavailable(f"narrator server answered HTTP {status}")
            lines = response.aiter_lines()
            async for line in lines:
                delta = parse_line(line)
                self._named(delta.model)
                if delta.content:
                    return response, lines, delta
                if delta.done or delta.finish:
                    break
            raise NarratorUnavailable("the model returned no text")  # not worth a retry
        except BaseException:
            if response is not None:
                await response.aclose()
            raise

    async def _open(self, slots: ServerSlots, payload: dict[str, Any], case_id: str) -> _Opened:
        """Send the request and read up to the first text chunk, holding a slot on the server
        that answers: fail over to the next server; after a round, back off and go again."""
        start = next(self._turn) % len(self.base_urls)
        order = [*self.base_urls[start:], *self.base_urls[:start]]
        attempts = 0
        for round_ in range(self.retries + 1):
            if round_:
                await asyncio.sleep(self.backoff_s * 2 ** (round_ - 1))
            remaining = list(order)
            while remaining:
                url = slots.choose(remaining)
                remaining.remove(url)
                await slots.acquire(url)
                since = time.perf_counter()
                try:
                    return (url, *await self._attempt(url, payload), since)
                except (_Retryable, httpx.TransportError, ValueError) as exc:
                    slots.release(url)
                    attempts += 1
                    reason = str(exc) if isinstance(exc, _Retryable) else type(exc).__name__
                    log.warning(
                        "narrator.retry",
                        case_id=case_id,
                        attempt=attempts,
                        server=self._where[url],
                        reason=reason,
                    )
                    if round_ == self.retries and not remaining:
                        servers = "servers" if len(order) > 1 else "server"
                        raise NarratorUnavailable(
                            f"narrator {servers} unavailable after {attempts} attempts: {reason}"
                        ) from exc
                except BaseException:
                    slots.release(url)
                    raise
        raise AssertionError("unreachable")

    def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        """Yield the server's text deltas as they arrive, under the deadlines."""
        return bounded(self._stream(request), self.deadlines)

    async def _stream(self, request: NarrationRequest) -> AsyncGenerator[str, None]:
        started = time.perf_counter()
        slots = self._slots.get()
        if slots.full(self.queue_size):
            raise NarratorUnavailable("narrator queue is full")
        url, response, lines, first, since = await self._open(
            slots, self._payload(request), request.case_id
        )
        first_chunk_s = time.perf_counter() - started
        metrics.llm_first_token(first_chunk_s)
        chunks, finish, ended = 1, first.finish, first.done
        try:
            yield first.content or ""
            while not (ended or finish):
                delta = parse_line(await anext(lines))  # StopAsyncIteration: the body ended
                finish, ended = delta.finish or finish, delta.done
                if delta.content:
                    chunks += 1
                    yield delta.content
            with contextlib.suppress(httpx.HTTPError, TimeoutError):  # so the connection is reused
                async with asyncio.timeout(_DRAIN_S):
                    async for _ in lines:
                        pass
        except StopAsyncIteration:
            pass  # ended without a marker: truncated (below)
        except (httpx.HTTPError, ValueError) as exc:
            log.error("narrator.stream_failed", case_id=request.case_id, error=type(exc).__name__)
            raise NarratorStreamError(f"narrator stream broke off: {type(exc).__name__}") from exc
        finally:
            try:
                await response.aclose()
            finally:
                slots.release(url, held_s=time.perf_counter() - since)
        if finish not in {None, "stop"} or not (ended or finish):
            reason = "the token limit" if finish == "length" else "no end-of-stream marker"
            log.warning("narrator.truncated", case_id=request.case_id, chunks=chunks)
            raise NarratorTruncated(f"the model's text ended early ({reason})")
        streaming_s = time.perf_counter() - started - first_chunk_s
        if streaming_s > 0 and chunks > 1:
            metrics.llm_rate((chunks - 1) / streaming_s)  # chunks ≈ tokens for streamed deltas
        log.info(
            "narrator.generated",
            case_id=request.case_id,
            model=self.info.name,
            server=self._where[url],
            chunks=chunks,
            first_chunk_s=round(first_chunk_s, 2),
            seconds=round(time.perf_counter() - started, 2),
        )
