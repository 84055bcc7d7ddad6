"""Fetch an image Attachment.url, only from the configured FHIR server (SSRF guard).

A URL is fetched when, after normalisation, it has the same scheme, host and port as
`settings.fhir_server_url` and its path lies under that base path. Userinfo, `..` segments,
fragments and redirects leaving the server are refused. The body is streamed and cut off at
`settings.max_upload_bytes`. A FHIR Binary answered as JSON is unwrapped.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import urllib.parse

import httpx

from service.errors import FetchNotAllowed, PayloadTooLarge, ServiceUnavailable, Unprocessable
from service.settings import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ACCEPT = "image/jpeg, image/png, image/webp, image/*;q=0.8, application/fhir+json;q=0.5"
_MAX_REDIRECTS = 3


def allowed_url(url: str, base: str) -> str:
    """The absolute URL to fetch, or FetchNotAllowed when it is not on the FHIR server `base`."""
    base_parts = _split(base, "the configured FHIR server URL")
    if "://" not in url and not url.startswith("//"):
        url = urllib.parse.urljoin(base.rstrip("/") + "/", url)
    parts = _split(url, "the image URL")
    base_path = base_parts.path.rstrip("/") + "/"
    same_origin = (parts.scheme, parts.host, parts.port) == (
        base_parts.scheme,
        base_parts.host,
        base_parts.port,
    )
    if not same_origin or not (parts.path + "/").startswith(base_path):
        raise FetchNotAllowed(
            "image URL is not on the configured FHIR server; only URLs under it are fetched "
            "(server-side request forgery guard)"
        )
    return parts.url


class _Parts:
    def __init__(self, scheme: str, host: str, port: int, path: str, url: str) -> None:
        self.scheme, self.host, self.port, self.path, self.url = scheme, host, port, path, url


def _split(url: str, what: str) -> _Parts:
    try:
        parsed = urllib.parse.urlsplit(url.strip())
        port = parsed.port
    except ValueError:
        raise FetchNotAllowed(f"{what} is not a valid URL") from None
    scheme = parsed.scheme.lower()
    raw_path = urllib.parse.unquote(parsed.path)
    if scheme not in _DEFAULT_PORTS or not parsed.hostname:
        raise FetchNotAllowed(f"{what} must be an absolute http(s) URL")
    if "@" in parsed.netloc or parsed.fragment or "\\" in raw_path:
        raise FetchNotAllowed(f"{what} may not carry userinfo, a fragment or backslashes")
    if ".." in raw_path.split("/"):
        raise FetchNotAllowed(f"{what} may not contain '..' path segments")
    host = parsed.hostname.lower().rstrip(".")
    port = port or _DEFAULT_PORTS[scheme]
    path = posixpath.normpath(parsed.path) if parsed.path else "/"
    path = "/" if path == "." else path
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    query = f"?{parsed.query}" if parsed.query else ""
    return _Parts(scheme, host, port, path, f"{scheme}://{netloc}{path}{query}")


async def fetch_attachment(
    url: str, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> bytes:
    """GET the image bytes at `url` (relative `Binary/…` or absolute) from the FHIR server."""
    base = settings.fhir_server_url
    if not base:
        raise FetchNotAllowed("image URL cannot be fetched: no FHIR server configured")
    target = allowed_url(url, base)
    timeout = httpx.Timeout(settings.fhir_fetch_timeout_s)
    async with httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                body, content_type, location = await _get(client, target, settings)
            except httpx.TimeoutException:
                raise ServiceUnavailable("the FHIR server did not answer in time") from None
            except httpx.HTTPError:
                raise ServiceUnavailable("the FHIR server cannot be reached") from None
            if location is None:
                return _unwrap(body, content_type, settings.max_upload_bytes)
            target = allowed_url(urllib.parse.urljoin(target, location), base)
    raise FetchNotAllowed("the FHIR server redirected too many times")


async def _get(
    client: httpx.AsyncClient, url: str, settings: Settings
) -> tuple[bytes, str, str | None]:
    limit = settings.max_upload_bytes
    async with client.stream("GET", url, headers={"Accept": _ACCEPT}) as response:
        if response.is_redirect:
            return b"", "", response.headers.get("location", "")
        if response.status_code >= 500:
            raise ServiceUnavailable(f"the FHIR server answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise Unprocessable(f"the image URL could not be fetched: HTTP {response.status_code}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"the fetched image exceeds {limit} bytes", limit_bytes=limit)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the fetched image exceeds {limit} bytes", limit_bytes=limit)
            chunks.append(chunk)
        return b"".join(chunks), response.headers.get("content-type", ""), None


def _unwrap(body: bytes, content_type: str, limit: int) -> bytes:
    """Raw bytes as they came, or the data of a FHIR Binary sent as JSON."""
    if "json" not in content_type.lower():
        return body
    try:
        resource = json.loads(body)
        data = base64.b64decode(resource["data"], validate=False)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Unprocessable("the fetched URL is JSON but not a FHIR Binary with data") from None
    if resource.get("resourceType") != "Binary":
        raise Unprocessable("the fetched URL is JSON but not a FHIR Binary with data")
    if len(data) > limit:
        raise PayloadTooLarge(f"the fetched image exceeds {limit} bytes", limit_bytes=limit)
    return data
