"""One line of an OpenAI-compatible `chat/completions` stream (Server-Sent Events).

`data: {json}` lines carry `choices[0].delta.content` and, on the last one,
`choices[0].finish_reason`; `data: [DONE]` ends the stream. Comments (`: keep-alive`),
`event:`/`id:` lines and blank separators carry nothing. An `error` object is a failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Delta:
    """What one line says: text, the end marker, the model's name, a finish reason."""

    content: str | None = None
    done: bool = False
    model: str | None = None
    finish: str | None = None


NOTHING = Delta()


def parse_line(line: str) -> Delta:
    """The `Delta` of one SSE line; raises ValueError on an error event or bad JSON."""
    if not line.startswith("data:"):
        return NOTHING
    data = line[5:].strip()
    if data == "[DONE]":
        return Delta(done=True)
    event = json.loads(data)
    if not isinstance(event, dict):
        raise ValueError("server event is not an object")
    if "error" in event:
        raise ValueError(f"server error event: {str(event['error'])[:200]}")
    choices = event.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    content = (choice.get("delta") or {}).get("content")
    finish = choice.get("finish_reason")
    model = event.get("model")
    return Delta(
        content=content if isinstance(content, str) else None,
        model=model if isinstance(model, str) else None,
        finish=finish if isinstance(finish, str) else None,
    )
