"""A threaded HTTP server on 127.0.0.1 for the fake upstreams tests talk to (LLM servers)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class LoopbackHttp:
    """`with Subclass(...) as server:` → `server.url` is `http://127.0.0.1:<port>/v1`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.closing()
        self._server.shutdown()
        self._server.server_close()

    def closing(self) -> None:
        """Called before shutdown (e.g. to release held requests)."""


class ModelListHandler(BaseHTTPRequestHandler):
    """Base handler of the fake OpenAI-compatible servers: quiet, HTTP/1.1, and
    `GET /v1/models` listing `model_id` (what the narrator's readiness check asks)."""

    protocol_version = "HTTP/1.1"
    model_id = "fake-model"

    def log_message(self, *args: object) -> None:
        return None

    def send_json(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.send_json({"object": "list", "data": [{"id": self.model_id}]})
