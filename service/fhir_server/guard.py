"""The SSRF guard: which URLs may be contacted on the configured FHIR server.

A URL is allowed when, after normalisation, it has the same scheme, host and port as the
server base and its path lies under the base path. Userinfo, `..` segments, fragments and
backslashes are refused.

The SMART token URL (`allowed_token_url`) is the one exception to "same server": SMART lets the
authorization server live on another host. It is allowed when it is `https`, or `http` on a
loopback address (127.0.0.0/8, ::1, `localhost`), with the same userinfo/fragment/`..` checks,
and only ever comes from configuration (`fhir_token_url`) or from the `token_endpoint` of the
configured server's own `/.well-known/smart-configuration`. Only our signed client assertion
is sent there — never a FHIR access token or patient data.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import urllib.parse

from service.errors import FetchNotAllowed

_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def allowed_token_url(url: str) -> str:
    """The normalised token URL, or FetchNotAllowed (https, or http on loopback; see above)."""
    parts = _split(url, "the token URL")
    if parts.scheme != "https" and not _loopback(parts.host):
        raise FetchNotAllowed("the token URL must be https (plain http only on a loopback address)")
    return parts.url


def _loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


_PATIENT_PATH = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})$")


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
