"""OpenAI-compatible chat servers on loopback that misbehave on purpose (fault injectors).

`with FaultyLlm("stall") as llm:` → `llm.url` (…/v1). Behaviours of `POST /chat/completions`:

- `hang`: read the request, send nothing, ever (until the test ends).
- `stall`: headers and the first text chunk, then nothing.
- `keepalive`: the first text chunk, then an SSE comment (`: keep-alive`) every 0.2 s, forever.
- `keepalive_only`: SSE comments every 0.2 s and never any text.
- `truncated`: the first section of a narrative, then the connection closes — no `[DONE]`.
- `text`: `text` streamed in small chunks, then `finish_reason: stop` and `[DONE]`.

A refused connection needs no server: `tests.support.live_server.free_port()`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler

from tests.support.loopback_http import LoopbackHttp, ModelListHandler

FIRST = "## Observations\n\nThe image classifier's leading finding is "
PARTIAL = FIRST + "acne, which is common.\n\n## Differential diagnosis\n\n- Rosacea\n"


def _event(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    chunk = {"model": "faulty-model", "choices": [{"delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


class FaultyLlm(LoopbackHttp):
    """A server whose chat answers follow `behaviour`; `requests` counts them."""

    def __init__(self, behaviour: str, text: str = "") -> None:
        self.behaviour = behaviour
        self.text = text
        self.requests = 0
        self.stop = threading.Event()  # set on exit: held handlers return
        faulty = self

        class Handler(ModelListHandler):
            model_id = "faulty-model"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                faulty.requests += 1
                self.close_connection = True
                # The narrator giving up and closing the connection is expected.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    faulty.answer(self)

        super().__init__(Handler)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        behaviour, write = self.behaviour, handler.wfile.write
        if behaviour == "hang":
            self.stop.wait()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        if behaviour == "text":
            for start in range(0, len(self.text), 40):
                write(_event(self.text[start : start + 40]))
            write(_event(finish="stop") + b"data: [DONE]\n\n")
            return
        if behaviour == "truncated":
            write(_event(PARTIAL))  # and the body ends: no finish_reason, no [DONE]
            return
        if behaviour != "keepalive_only":
            write(_event(FIRST))
        handler.wfile.flush()
        while not self.stop.wait(0.2):
            if behaviour.startswith("keepalive"):
                write(b": keep-alive\n\n")
                handler.wfile.flush()

    def closing(self) -> None:
        self.stop.set()
