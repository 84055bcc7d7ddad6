"""A request body must keep arriving: a client that sends headers and half a body, then stalls,
gets 408 and a closed connection instead of holding a worker's request open forever.

uvicorn (h11) has no body read timeout, so this ASGI middleware wraps `receive()` until the
last body chunk: each wait is bounded by `body_idle_timeout_s` (the gap between chunks) and by
what is left of `body_timeout_s` (the whole body). On expiry the handler's read raises
`RequestBodyTimeout`, which the door renders in its own format (problem+json, or an
OperationOutcome under `/fhir`), and the answer carries `Connection: close` so the server drops
the half-sent request. After the body is complete `receive()` is passed through untouched (a
streaming response waits on it for the client's disconnect).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from service.errors import ServiceError
from service.logging import get_logger

log = get_logger(__name__)


class RequestBodyTimeout(ServiceError):
    """The request body stopped arriving."""

    status, code, title = 408, "request-timeout", "Request body timed out"


def body_timeout(idle_s: float, total_s: float) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware factory for the given limits (seconds)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            loop = asyncio.get_running_loop()
            state = {"deadline": 0.0, "complete": False, "expired": False}

            async def timed_receive() -> ReceiveMessage:
                if state["complete"]:
                    return await receive()
                now = loop.time()
                if not state["deadline"]:
                    state["deadline"] = now + total_s
                wait = max(0.0, min(idle_s, float(state["deadline"]) - now))
                try:
                    message = await asyncio.wait_for(receive(), timeout=wait)
                except TimeoutError:
                    state["expired"] = True
                    log.info("request_body_timeout", path=scope.get("path"))
                    raise RequestBodyTimeout(
                        f"the request body did not arrive in time (at most {idle_s:g} s between "
                        f"chunks, {total_s:g} s in all)"
                    ) from None
                if message["type"] != "http.request" or not message.get("more_body", False):
                    state["complete"] = True
                return message

            async def closing_send(message: Message) -> None:
                if state["expired"] and message["type"] == "http.response.start":
                    headers = [
                        h for h in message.get("headers", []) if h[0].lower() != b"connection"
                    ]
                    message["headers"] = [*headers, (b"connection", b"close")]
                await send(message)

            await app(scope, timed_receive, closing_send)

        return middleware

    return wrap
