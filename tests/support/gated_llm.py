"""An OpenAI-compatible chat server on loopback that holds each answer until the test says go.

It lets a test prove that events reach an SSE client *while* the narrator is still waiting:
if the service buffered its response, the client would see nothing before the release, and
the server would give up (503) after `hold_s` — which the test then sees as `timed_out`.
"""

from __future__ import annotations

import json
import threading

from tests.support.loopback_http import LoopbackHttp, ModelListHandler

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

        class Handler(ModelListHandler):
            protocol_version = "HTTP/1.0"  # the stream ends when the connection closes
            model_id = "gated-model"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gated.waiting.set()
                if not gated.release.wait(gated.hold_s):
                    gated.timed_out = True
                    self.send_json({"error": "nobody released the answer"}, 503)
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
