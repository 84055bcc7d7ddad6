"""A small SSE parser over httpx streaming, for tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    """One parsed SSE frame."""

    id: int | None
    name: str
    data: dict[str, Any]


def iter_sse(response: httpx.Response) -> Iterator[SseEvent | str]:
    """Yield events, and comment lines (as str) — used to check keep-alives and retry."""
    event_id: int | None = None
    name = "message"
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseEvent(event_id, name, json.loads("\n".join(data)))
            event_id, name, data = None, "message", []
        elif line.startswith(":") or line.startswith("retry:"):
            yield line
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = int(value)
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)


def event_schema(contract: dict[str, Any], name: str) -> dict[str, Any]:
    """The JSON Schema of one event, with the contract's shared $defs."""
    return {"$schema": contract["$schema"], "$defs": contract["$defs"], **contract["events"][name]}
