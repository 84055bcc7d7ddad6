"""Every error becomes RFC 9457 problem+json (REST) — never a 500 with a stack trace."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from service.errors import ServiceError, error_from_problem, error_headers
from service.logging import get_logger
from service.store.faults import storage_fault

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[Any]:
    """A problem+json response with the body's status."""
    return Response(
        content=body, status_code=int(body["status"]), media_type=PROBLEM_JSON, headers=headers
    )


def service_error_body(request: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    """ServiceError → problem+json (+ Retry-After, WWW-Authenticate)."""
    headers = error_headers(exc) or None
    log.info("request_rejected", status=exc.status, code=exc.code, path=request.url.path)
    return problem_response(exc.problem(instance=request.url.path), headers)


def http_error_body(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own errors (404 route, 405, 413 body limit, validation) → problem+json."""
    status = exc.status_code
    code, title = {
        404: ("not-found", "Not found"),
        405: ("method-not-allowed", "Method not allowed"),
        413: ("payload-too-large", "Payload too large"),
    }.get(status, ("bad-request" if status < 500 else "internal-error", "Request failed"))
    detail = exc.detail
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.route_handler.resolve_request_max_body_size()
        detail = f"the request body exceeds the limit of {limit} bytes"
    elif isinstance(exc, ValidationException):
        code, title, status = "invalid-request", "Invalid request", 400
    elif isinstance(exc, NotFoundException | MethodNotAllowedException):
        detail = detail or title
    body: dict[str, Any] = {
        "type": f"https://skinscreen.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
    }
    if isinstance(exc, ValidationException) and exc.extra:
        body["errors"] = exc.extra
    return problem_response(body, exc.headers)


def unexpected_error_body(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Anything else: a generic 500 without internals; the log gets the type, not the message.
    A storage error that escaped the store (disk full, read-only) is its 507 / 503 instead."""
    fault = storage_fault(exc)
    if fault is not None:
        return service_error_body(request, fault)
    log.error("unhandled_error", error=type(exc).__name__, path=request.url.path)
    return problem_response(
        {
            "type": "https://skinscreen.dev/problems/internal-error",
            "title": "Internal error",
            "status": 500,
            "detail": "the service failed to handle this request; it has been logged",
            "code": "internal-error",
            "instance": request.url.path,
        }
    )


def _for_the_door(handler: Any) -> Any:
    """The same error as an OperationOutcome on `/fhir` paths (routing errors such as 404/405
    happen before the FHIR controller's own handlers apply)."""

    def answer(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        response: Response[Any] = handler(request, exc)
        if not request.url.path.startswith("/fhir"):
            return response
        from service.api.fhir_wire import outcome_response

        body = response.content if isinstance(response.content, dict) else {}
        headers = {k: v for k, v in (response.headers or {}).items() if k.lower() != "content-type"}
        outcome = outcome_response(error_from_problem(body))
        outcome.headers.update(headers)
        return outcome

    return answer


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: _for_the_door(service_error_body),
    HTTPException: _for_the_door(http_error_body),
    Exception: _for_the_door(unexpected_error_body),
}
