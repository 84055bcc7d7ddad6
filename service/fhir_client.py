"""A small client for the configured FHIR server: read a Patient, POST a transaction Bundle.

Only URLs under `settings.fhir_server_url` are contacted (the `allowed_url` SSRF guard), no
redirects are followed, no proxy settings are read, and answers are cut off at
`settings.max_upload_bytes`. Nothing here logs patient data.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from service.errors import FetchNotAllowed, FhirUnprocessable, ServiceUnavailable
from service.intake.fhir_fetch import allowed_url
from service.settings import Settings

FHIR_JSON = "application/fhir+json"
_PATIENT_PATH = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})$")


class _TooLarge(Exception):
    """An answer over the size cap."""


def server_patient(reference: str | None, base: str | None) -> str | None:
    """`Patient/<id>` when `reference` names a Patient on the server `base`, else None.

    A relative `Patient/123` and an absolute URL under `base` both qualify; `urn:` references,
    versioned or query references and other servers do not.
    """
    if not reference or not base or reference.startswith("urn:"):
        return None
    try:
        url = allowed_url(reference, base)
        root = allowed_url(base, base).rstrip("/") + "/"
    except FetchNotAllowed:
        return None
    relative = url[len(root) :] if url.startswith(root) else ""
    return relative if _PATIENT_PATH.match(relative) else None


def _client_options(settings: Settings) -> dict[str, Any]:
    return {
        "timeout": httpx.Timeout(settings.fhir_fetch_timeout_s),
        "follow_redirects": False,
        "trust_env": False,
    }


def _base(settings: Settings) -> str:
    if not settings.fhir_server_url:
        raise FetchNotAllowed("no FHIR server is configured")
    return settings.fhir_server_url


async def read_patient(
    reference: str, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, Any]:
    """GET `{server}/Patient/<id>` → the Patient JSON.

    404/410 → 422 "not found on the FHIR server"; unreachable, timeout or 5xx → 503.
    """
    url = allowed_url(reference, _base(settings))
    limit = settings.max_upload_bytes
    async with httpx.AsyncClient(transport=transport, **_client_options(settings)) as client:
        try:
            async with client.stream("GET", url, headers={"Accept": FHIR_JSON}) as response:
                status = response.status_code
                body = await _read_async(response, limit) if status == 200 else b""
        except httpx.TimeoutException:
            raise ServiceUnavailable("the FHIR server did not answer in time") from None
        except httpx.HTTPError:
            raise ServiceUnavailable("the FHIR server cannot be reached") from None
        except _TooLarge:
            raise FhirUnprocessable(f"subject {reference} is larger than {limit} bytes") from None
    if status in (404, 410):
        raise FhirUnprocessable(f"subject {reference} not found on the FHIR server")
    if status >= 500:
        raise ServiceUnavailable(f"the FHIR server answered HTTP {status}")
    if status != 200:
        raise FhirUnprocessable(f"subject {reference} could not be read: HTTP {status}")
    try:
        resource = json.loads(body)
    except ValueError:
        resource = None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise FhirUnprocessable(f"the FHIR server's {reference} is not a Patient resource")
    return resource


async def _read_async(response: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class WriteBackResult:
    """What happened to one transaction POST (stored as the `fhir-write-back` artifact)."""

    status: str  # "succeeded" | "failed"
    http_status: int | None = None
    entries: list[dict[str, str | None]] = field(default_factory=list)
    error: str | None = None
    duration_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def post_transaction(
    bundle: dict[str, Any], settings: Settings, transport: httpx.BaseTransport | None = None
) -> WriteBackResult:
    """POST a transaction Bundle to the server base; never raises (failures are the result)."""
    started = time.monotonic()
    result = _post(bundle, settings, transport)
    result.duration_ms = round((time.monotonic() - started) * 1000)
    return result


def _post(
    bundle: dict[str, Any], settings: Settings, transport: httpx.BaseTransport | None
) -> WriteBackResult:
    try:
        url = allowed_url(_base(settings), _base(settings))
    except FetchNotAllowed as error:
        return WriteBackResult("failed", error=error.detail)
    content = json.dumps(bundle, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    try:
        with (
            httpx.Client(transport=transport, **_client_options(settings)) as client,
            client.stream("POST", url, content=content, headers=headers) as response,
        ):
            status = response.status_code
            body = _read_sync(response, settings.max_upload_bytes)
    except httpx.TimeoutException:
        return WriteBackResult("failed", error="the FHIR server did not answer in time")
    except httpx.HTTPError as error:
        return WriteBackResult(
            "failed", error=f"the FHIR server cannot be reached ({type(error).__name__})"
        )
    except _TooLarge:
        return WriteBackResult("failed", error="the FHIR server's answer is too large")
    entries = _response_entries(body)
    if not 200 <= status < 300:
        return WriteBackResult("failed", status, entries, f"the FHIR server answered HTTP {status}")
    return WriteBackResult("succeeded", status, entries)


def _read_sync(response: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _response_entries(body: bytes) -> list[dict[str, str | None]]:
    """`response.status` and `response.location` of each transaction-response entry."""
    try:
        resource = json.loads(body) if body else None
    except ValueError:
        return []
    if not isinstance(resource, dict) or resource.get("type") != "transaction-response":
        return []
    found = []
    for entry in resource.get("entry") or []:
        response = entry.get("response") if isinstance(entry, dict) else None
        if isinstance(response, dict):
            found.append(
                {
                    "status": _text(response.get("status")),
                    "location": _text(response.get("location")),
                }
            )
    return found


def _text(value: Any) -> str | None:
    return str(value)[:500] if isinstance(value, str) else None
