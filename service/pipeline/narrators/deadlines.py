"""Deadlines on a language model's text stream: first token, between tokens, overall.

`bounded(chunks, deadlines)` re-yields a narrator's text chunks and raises `NarratorDeadline`
the moment one deadline passes: no text `first_token_s` after the stream was started (queue
wait, connection, retries and model load included), no text for `inter_token_s` after the
last chunk, or `total_s` since the start. Only text counts: SSE keep-alive comments, role
deltas or empty chunks never reach it, so they cannot keep a stalled stream alive. On a breach
the inner stream is cancelled at its await and closed (its `finally` frees the server slot or
the device); the run then falls back to the knowledge narrator (`narration.narrate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from service.pipeline.narrators.base import NarratorFailed


class NarratorDeadline(NarratorFailed):
    """A deadline passed; `code` says which one (`first_token`, `inter_token`, `total`)."""

    _MESSAGES = {
        "first_token": "no first token within {s:g} s",
        "inter_token": "no token for {s:g} s",
        "total": "not finished within {s:g} s",
    }

    def __init__(self, code: str, seconds: float) -> None:
        super().__init__(self._MESSAGES[code].format(s=seconds))
        self.code = code


@dataclass(frozen=True)
class Deadlines:
    """Seconds; see the module docstring."""

    first_token_s: float = 45.0
    inter_token_s: float = 20.0
    total_s: float = 240.0

    def __post_init__(self) -> None:
        if min(self.first_token_s, self.inter_token_s, self.total_s) <= 0:
            raise ValueError("deadlines must be positive")


async def bounded(chunks: AsyncIterator[str], deadlines: Deadlines) -> AsyncGenerator[str, None]:
    """Yield `chunks` (text only), enforcing `deadlines`; see the module docstring."""
    started = time.monotonic()
    total_by = started + deadlines.total_s
    first = True
    try:
        while True:
            phase, wait_s = (
                ("first_token", deadlines.first_token_s)
                if first
                else ("inter_token", deadlines.inter_token_s)
            )
            now = time.monotonic()
            if total_by - now < wait_s:
                phase, wait_s = "total", max(total_by - now, 0.0)
            try:
                async with asyncio.timeout(wait_s):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                seconds = deadlines.total_s if phase == "total" else wait_s
                raise NarratorDeadline(phase, seconds) from exc
            if chunk:
                first = False
                yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
