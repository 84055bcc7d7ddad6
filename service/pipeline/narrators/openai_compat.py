"""A narrator that streams from any OpenAI-compatible server (vLLM, Ollama, llama.cpp, TGI).

`POST {base_url}/chat/completions` with `stream: true`; the reply is Server-Sent Events whose
`data:` lines carry `choices[0].delta.content`, ended by `data: [DONE]`. Failures before the
first chunk (connection refused, timeout, 429/5xx) are retried with exponential backoff, then
raise `NarratorUnavailable` so the run falls back to the knowledge narrator; a 4xx is not
retried. A failure after the first chunk raises `NarratorStreamError` (the run reports an
error). The weights behind a server are not visible to us: `info.sha256` is the SHA-256 of
"base_url|model", `info.name` the model the server reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import structlog

from service.pipeline.domain import ModelInfo
from service.pipeline.narrators.base import NarrationRequest, NarratorUnavailable
from service.pipeline.narrators.prompts import build_messages

log = structlog.get_logger(__name__)

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class NarratorStreamError(RuntimeError):
    """The server failed after the first chunk; the text so far is incomplete."""


class _Retryable(Exception):
    """A failure before the first chunk that is worth another attempt."""


def _deltas_from(line: str) -> tuple[str | None, bool, str | None]:
    """(content, done, model) of one SSE line; raises ValueError on an error event."""
    if not line.startswith("data:"):
        return None, False, None  # comments, `event:`/`id:` lines, blank separators
    data = line[5:].strip()
    if data == "[DONE]":
        return None, True, None
    event = json.loads(data)
    if "error" in event:
        raise ValueError(f"server error event: {str(event['error'])[:200]}")
    choices = event.get("choices") or [{}]
    content = (choices[0].get("delta") or {}).get("content")
    return (content if isinstance(content, str) else None), False, event.get("model")


class OpenAICompatNarrator:
    """Streams the report from an OpenAI-compatible chat-completions endpoint."""

    without_llm = False

    def __init__(
        self,
        base_url: str,
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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.max_tokens = max_tokens
        self.send_image = send_image
        self.backoff_s = backoff_s
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._transport = transport
        digest = hashlib.sha256(f"{self.base_url}|{model}".encode()).hexdigest()
        self.info = ModelInfo(name=model, version="remote", sha256=digest, kind="narrator")

    def ensure_capacity(self) -> None:
        """The server queues requests itself; an overloaded one answers 429/503 (retried)."""

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=self._timeout,
            transport=self._transport,
        )

    def _named(self, model: str | None) -> None:
        """Record the model name the server reports (sha256 stays the configured identity)."""
        if model and model != self.info.name:
            self.info = dataclasses.replace(self.info, name=model)

    async def refresh_info(self) -> ModelInfo:
        """Ask `GET /models` which model the server serves; keep the configured name if it
        does not say. Never raises: an unreachable server is found out by `stream`."""
        try:
            async with self._client() as client:
                response = await client.get("/models")
                response.raise_for_status()
                ids = [str(item["id"]) for item in response.json().get("data", []) if "id" in item]
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            return self.info
        self._named(self.model if self.model in ids else (ids[0] if ids else None))
        return self.info

    def _payload(self, request: NarrationRequest) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": build_messages(request, include_image=self.send_image),
            "stream": True,
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }

    async def _open(
        self, client: httpx.AsyncClient, payload: dict[str, Any], case_id: str
    ) -> tuple[httpx.Response, AsyncIterator[str], str]:
        """Send the request and read up to the first text chunk, retrying what is retryable."""
        for attempt in range(self.retries + 1):
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
                    content, done, model = _deltas_from(line)
                    self._named(model)
                    if done:
                        break
                    if content:
                        return response, lines, content
                raise NarratorUnavailable("the model returned no text")  # not worth a retry
            except (_Retryable, httpx.TransportError, ValueError) as exc:
                if response is not None:
                    await response.aclose()
                reason = str(exc) if isinstance(exc, _Retryable) else type(exc).__name__
                log.warning("narrator.retry", case_id=case_id, attempt=attempt + 1, reason=reason)
                if attempt == self.retries:
                    raise NarratorUnavailable(
                        f"narrator server unavailable after {attempt + 1} attempts: {reason}"
                    ) from exc
                await asyncio.sleep(self.backoff_s * 2**attempt)
            except BaseException:
                if response is not None:
                    await response.aclose()
                raise
        raise AssertionError("unreachable")

    async def stream(self, request: NarrationRequest) -> AsyncGenerator[str, None]:
        """Yield the server's text deltas as they arrive."""
        started = time.perf_counter()
        chunks = 1
        async with self._client() as client:
            response, lines, first = await self._open(
                client, self._payload(request), request.case_id
            )
            try:
                yield first
                async for line in lines:
                    content, done, _ = _deltas_from(line)
                    if done:
                        break
                    if content:
                        chunks += 1
                        yield content
            except (httpx.HTTPError, ValueError) as exc:
                log.error(
                    "narrator.stream_failed", case_id=request.case_id, error=type(exc).__name__
                )
                raise NarratorStreamError(
                    f"narrator stream broke off: {type(exc).__name__}"
                ) from exc
            finally:
                await response.aclose()
        log.info(
            "narrator.generated",
            case_id=request.case_id,
            model=self.info.name,
            chunks=chunks,
            seconds=round(time.perf_counter() - started, 2),
        )
