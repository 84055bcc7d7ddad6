"""Server-Sent Events framing and the streaming response every SSE door uses."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from litestar.response import Stream

from service.errors import BadRequest
from service.jobs import JobManager

RETRY_MS = 3000
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def format_event(seq: int, name: str, data: dict[str, Any]) -> bytes:
    """One SSE frame with `id:`, `event:` and a single-line JSON `data:`."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {seq}\nevent: {name}\ndata: {payload}\n\n".encode()


async def job_event_stream(
    jobs: JobManager, job_id: str, after: int, keepalive_s: float
) -> AsyncIterator[bytes]:
    """`retry:` first, then the job's events after `after`, with comment keep-alives."""
    yield f"retry: {RETRY_MS}\n: job {job_id}\n\n".encode()
    async for event in jobs.follow(job_id, after, keepalive_s):
        if event is None:
            yield b": keep-alive\n\n"
        else:
            yield format_event(event.seq, event.name, event.data)


def sse_response(
    jobs: JobManager, job_id: str, after: int, keepalive_s: float, status_code: int = 200
) -> Stream:
    """The text/event-stream response for a job."""
    headers = {
        **SSE_HEADERS,
        "Link": f'</api/v1/jobs/{job_id}/events>; rel="monitor"',
        "X-Job-Id": job_id,
    }
    return Stream(
        job_event_stream(jobs, job_id, after, keepalive_s),
        media_type="text/event-stream",
        headers=headers,
        status_code=status_code,
    )


_EVENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes "²"


def last_event_id(header: str | None, query: str | None) -> int:
    """Sequence number to resume after (`Last-Event-ID` header, else `?after=`); 0 when neither
    is given. Anything but 1–18 ASCII digits is a 400: this service only ever sends such ids."""
    for raw, name in ((header, "Last-Event-ID"), (query, "after")):
        text = (raw or "").strip()
        if not text:
            continue
        if not _EVENT_ID.fullmatch(text):
            raise BadRequest(
                f"{name} must be an event id this service sent (1 to 18 digits)",
                expression=[name],
            )
        return int(text)
    return 0
