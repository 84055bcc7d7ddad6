"""An OpenAI-compatible chat server on loopback that holds each answer until the test says go.

It lets a test prove that events reach an SSE client *while* the narrator is still waiting:
if the service buffered its response, the client would see nothing before the release, and
the server would give up (503) after `hold_s` — which the test then sees as `timed_out`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback_http import LoopbackHttp

TEXT = [
    "## Observations\n\nA gated ",
    "narrative ",
    "arrives.\n\n## Differential diagnosis\n\n- Rosacea\n\n## Red flags\n\n- Bleeding\n\n",
    "## Recommended next steps\n\n- See a clinician promptly.\n\n## Follow-up\n\nAs agreed.\n",
]


class GatedLlm(LoopbackHttp):
    """`with GatedLlm() as llm:` → `llm.url` (…/v1), `llm.waiting`, `llm.release`."""

    def __init__(self, hold_s: float = 20.0) -> None:
        self.hold_s = hold_s
        self.waiting = threading.Event()  # a chat request has arrived and is being held
        self.release = threading.Event()  # the test lets the answer go
        self.timed_out = False
        gated = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": "gated-model"}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gated.waiting.set()
                if not gated.release.wait(gated.hold_s):
                    gated.timed_out = True
                    self._json(503, {"error": "nobody released the answer"})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for piece in TEXT:
                    chunk = {"model": "gated-model", "choices": [{"delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        super().__init__(Handler)

    def closing(self) -> None:
        self.release.set()
