"""`FhirServer`: the one adapter for the configured FHIR server.

It fetches image attachments, reads Patients and POSTs transaction Bundles, all through one
injectable `httpx.AsyncClient` (built in `service.bootstrap`; tests pass one with their own
transport). Only URLs under `settings.fhir_server_url` are contacted (`guard.allowed_url`),
redirects are followed by hand and only onto the server, no proxy settings are read, and
every answer is cut off at `settings.max_upload_bytes`. Nothing here logs patient data.

With `fhir_client_id` and `fhir_client_key_path` set, every request carries a SMART Backend
Services bearer token (`smart.SmartClient`, same client); a 401 gets one fresh token and one
retry. No token → 503 for the doors that wait (fetch, read), a failed result for write-back.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from service import bounded_json
from service.errors import (
    FetchNotAllowed,
    FhirUnprocessable,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
)
from service.fhir_server.guard import allowed_url, server_patient
from service.fhir_server.smart import AuthorizationUnavailable, SmartClient
from service.logging import get_logger
from service.settings import Settings

log = get_logger(__name__)

FHIR_JSON = "application/fhir+json"
_IMAGE_ACCEPT = "image/jpeg, image/png, image/webp, image/*;q=0.8, application/fhir+json;q=0.5"
_MAX_REDIRECTS = 3


class _TooLarge(Exception):
    """An answer over the size cap."""


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


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str
    location: str | None


def new_http_client(settings: Settings) -> httpx.AsyncClient:
    """The client bootstrap builds: timeouts from settings, no redirects, no proxies."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.fhir_fetch_timeout_s),
        follow_redirects=False,
        trust_env=False,
    )


class FhirServer:
    """The configured FHIR server (or none: then every call says so)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.base = settings.fhir_server_url
        self.limit = settings.max_upload_bytes
        self._client = client or new_http_client(settings)
        self._smart = _smart_client(settings, self._client)

    @property
    def configured(self) -> bool:
        """True when a server URL is set."""
        return bool(self.base)

    def patient_on_server(self, reference: str | None) -> str | None:
        """`Patient/<id>` when `reference` names a Patient on this server, else None."""
        return server_patient(reference, self.base)

    async def aclose(self) -> None:
        """Close the HTTP client (process exit)."""
        await self._client.aclose()

    def _url(self, url: str) -> str:
        if not self.base:
            raise FetchNotAllowed("no FHIR server is configured")
        return allowed_url(url, self.base)

    async def _send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None = None
    ) -> _Answer:
        """The request with our bearer token (SMART configured): a 401 → a fresh token, one retry.

        No token → `AuthorizationUnavailable`.
        """
        if self._smart is None:
            return await self._send_once(method, url, headers, content)
        token = await self._smart.token()
        answer = await self._send_once(method, url, _bearer(headers, token), content)
        if answer.status != 401:
            return answer
        token = await self._smart.refresh(token)
        return await self._send_once(method, url, _bearer(headers, token), content)

    async def _send_once(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None
    ) -> _Answer:
        """One request, the answer read up to the size cap (`_TooLarge` past it)."""
        request = self._client.build_request(method, url, headers=headers, content=content)
        response = await self._client.send(request, stream=True)
        try:
            if response.is_redirect:
                return _Answer(response.status_code, b"", "", response.headers.get("location", ""))
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                raise _TooLarge
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.limit:
                    raise _TooLarge
                chunks.append(chunk)
            content_type = response.headers.get("content-type", "")
            return _Answer(response.status_code, b"".join(chunks), content_type, None)
        finally:
            await response.aclose()

    async def _get(self, url: str, accept: str, too_large: Exception) -> _Answer:
        """GET for a door that is waiting: unreachable or slow → 503, too large → `too_large`."""
        try:
            answer = await self._send("GET", url, {"Accept": accept})
        except AuthorizationUnavailable as error:
            raise ServiceUnavailable(str(error)) from None
        except httpx.TimeoutException:
            raise ServiceUnavailable("the FHIR server did not answer in time") from None
        except httpx.HTTPError:
            raise ServiceUnavailable("the FHIR server cannot be reached") from None
        except _TooLarge:
            raise too_large from None
        if answer.status == 401 and self._smart is not None:
            raise ServiceUnavailable("the FHIR server refused our fresh access token (HTTP 401)")
        return answer

    async def fetch_attachment(self, url: str) -> bytes:
        """GET image bytes at `url` (relative `Binary/…` or absolute) from the server."""
        if not self.base:
            raise FetchNotAllowed("image URL cannot be fetched: no FHIR server configured")
        target = self._url(url)
        too_large = PayloadTooLarge(
            f"the fetched image exceeds {self.limit} bytes", limit_bytes=self.limit
        )
        for _ in range(_MAX_REDIRECTS + 1):
            answer = await self._get(target, _IMAGE_ACCEPT, too_large)
            if answer.location is not None:
                target = self._url(urllib.parse.urljoin(target, answer.location))
                continue
            if answer.status >= 500:
                raise ServiceUnavailable(f"the FHIR server answered HTTP {answer.status}")
            if answer.status != 200:
                raise Unprocessable(f"the image URL could not be fetched: HTTP {answer.status}")
            data = _unwrap_binary(answer.body, answer.content_type)
            if len(data) > self.limit:
                raise too_large
            return data
        raise FetchNotAllowed("the FHIR server redirected too many times")

    async def read_patient(self, reference: str) -> dict[str, Any]:
        """GET `{server}/Patient/<id>` → the Patient JSON.

        404/410 → 422 "not found on the FHIR server"; unreachable, timeout or 5xx → 503.
        """
        too_large = FhirUnprocessable(f"subject {reference} is larger than {self.limit} bytes")
        answer = await self._get(self._url(reference), FHIR_JSON, too_large)
        status = answer.status
        if status in (404, 410):
            raise FhirUnprocessable(f"subject {reference} not found on the FHIR server")
        if status >= 500:
            raise ServiceUnavailable(f"the FHIR server answered HTTP {status}")
        if status != 200:
            raise FhirUnprocessable(f"subject {reference} could not be read: HTTP {status}")
        try:
            resource = bounded_json.loads(answer.body)
        except ValueError:
            resource = None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            raise FhirUnprocessable(f"the FHIR server's {reference} is not a Patient resource")
        return resource

    async def post_transaction(self, bundle: dict[str, Any]) -> WriteBackResult:
        """POST a transaction Bundle to the server base; never raises (failures are the result)."""
        started = time.monotonic()
        result = await self._post(bundle)
        result.duration_ms = round((time.monotonic() - started) * 1000)
        return result

    async def _post(self, bundle: dict[str, Any]) -> WriteBackResult:
        try:
            url = self._url(self.base or "")
        except FetchNotAllowed as error:
            return WriteBackResult("failed", error=error.detail)
        content = json.dumps(bundle, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        try:
            answer = await self._send("POST", url, headers, content)
        except AuthorizationUnavailable as error:
            return WriteBackResult("failed", error=str(error))
        except httpx.TimeoutException:
            return WriteBackResult("failed", error="the FHIR server did not answer in time")
        except httpx.HTTPError as error:
            return WriteBackResult(
                "failed", error=f"the FHIR server cannot be reached ({type(error).__name__})"
            )
        except _TooLarge:
            return WriteBackResult("failed", error="the FHIR server's answer is too large")
        entries = _response_entries(answer.body)
        if not 200 <= answer.status < 300:
            message = f"the FHIR server answered HTTP {answer.status}"
            return WriteBackResult("failed", answer.status, entries, message)
        return WriteBackResult("succeeded", answer.status, entries)


def _smart_client(settings: Settings, client: httpx.AsyncClient) -> SmartClient | None:
    """A SmartClient when a server, a client id and a key are configured."""
    wanted = (settings.fhir_client_id, settings.fhir_client_key_path)
    if settings.fhir_server_url and all(wanted):
        return SmartClient(settings, client)
    if any(wanted):
        log.warning("fhir.smart_incomplete", detail="set both fhir_client_id and key path")
    return None


def _bearer(headers: dict[str, str], token: str) -> dict[str, str]:
    return {**headers, "Authorization": f"Bearer {token}"}


def _unwrap_binary(body: bytes, content_type: str) -> bytes:
    """Raw bytes as they came, or the data of a FHIR Binary sent as JSON."""
    if "json" not in content_type.lower():
        return body
    try:
        resource = bounded_json.loads(body)
        data = base64.b64decode(resource["data"], validate=False)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Unprocessable("the fetched URL is JSON but not a FHIR Binary with data") from None
    if resource.get("resourceType") != "Binary":
        raise Unprocessable("the fetched URL is JSON but not a FHIR Binary with data")
    return data


def _response_entries(body: bytes) -> list[dict[str, str | None]]:
    """`response.status` and `response.location` of each transaction-response entry."""
    try:
        resource = bounded_json.loads(body) if body else None
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
