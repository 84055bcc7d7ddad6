"""An OpenAI-compatible chat server on loopback that streams a fixed answer slowly.

It makes a case's narration last long enough to kill a worker in the middle of it.
"""

from __future__ import annotations

import json
import time

from tests.support.loopback_http import LoopbackHttp, ModelListHandler

#: The last chunk: the other sections, so that the output guard accepts the narrative.
TAIL = (
    "\n\n## Differential diagnosis\n\n- Rosacea\n\n## Red flags\n\n- Bleeding\n\n"
    "## Recommended next steps\n\n- See a clinician promptly.\n\n## Follow-up\n\nAs agreed.\n"
)


class SlowLlm(LoopbackHttp):
    """`with SlowLlm(chunks=10, delay_s=0.2) as llm:` → `llm.url` (…/v1)."""

    def __init__(self, chunks: int = 10, delay_s: float = 0.2) -> None:
        self.requests = 0
        slow = self

        class Handler(ModelListHandler):
            model_id = "slow-model"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                slow.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for i in range(chunks):
                        piece = (
                            "## Observations\n\n"
                            if i == 0
                            else TAIL
                            if i == chunks - 1
                            else f"part {i} "
                        )
                        chunk = {"model": "slow-model", "choices": [{"delta": {"content": piece}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(delay_s)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker was killed mid-answer
                self.close_connection = True

        super().__init__(Handler)
