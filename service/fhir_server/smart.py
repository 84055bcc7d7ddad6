"""SMART Backend Services for the configured FHIR server: access tokens we ask the EHR for.

`SmartClient` gets a token with the client_credentials grant and a `private_key_jwt` client
assertion (RFC 7523, SMART App Launch 2.x "Backend Services"):

- the token URL is `settings.fhir_token_url`, else the `token_endpoint` of
  `{fhir_server_url}/.well-known/smart-configuration` (read through the same guarded client).
  Either way it must pass `guard.allowed_token_url` (https, or http on a loopback address);
- the assertion is signed RS384 (RSA key) or ES384 (EC P-384 key) from
  `settings.fhir_client_key_path`: iss = sub = the client id, aud = the token URL, a fresh
  `jti`, `exp` 4 minutes ahead, `kid` = the key's RFC 7638 thumbprint (or the configured id);
- the token is cached until 30 s before its `expires_in`; one fetch at a time (asyncio.Lock).
  `refresh(rejected)` replaces a token the FHIR server answered 401 to (once per bad token).

Failures raise `AuthorizationUnavailable`, whose text is safe to show: it never holds the key,
the assertion, the token or the authorization server's free text — only its `error` code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service import bounded_json
from service.errors import FetchNotAllowed
from service.fhir_server.guard import allowed_token_url, allowed_url
from service.settings import Settings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 240  # SMART: at most 5 minutes; a margin for clock skew
REFRESH_MARGIN_S = 30.0
DEFAULT_EXPIRES_IN_S = 60  # when the token response omits `expires_in`
_ANSWER_LIMIT = 64 * 1024
_DISCOVERY = ".well-known/smart-configuration"
_REFUSED = "the FHIR server's authorization server refused us an access token"
_NO_TOKEN = "no access token for the FHIR server"
_WHO = "the FHIR server or its authorization server"
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token


class AuthorizationUnavailable(Exception):
    """No access token could be had; `str()` is a safe description (no secret in it)."""


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # time.monotonic()


@dataclass(frozen=True)
class ClientKey:
    """The client's private key, its JWS algorithm and its `kid`."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    algorithm: str
    kid: str


def load_client_key(pem: bytes, kid: str | None = None) -> ClientKey:
    """An RSA (→ RS384) or EC P-384 (→ ES384) private key; ValueError for anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("the client key is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return ClientKey(key, "RS384", kid or jwk_thumbprint(public))
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return ClientKey(key, "ES384", kid or jwk_thumbprint(public))
    raise ValueError("the client key must be an RSA or an EC P-384 private key")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, no whitespace; base64url."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[str(jwk["kty"])]
    members = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(members.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SmartClient:
    """Access tokens for one FHIR server, fetched with `client` (no redirects, no proxies)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        if not (settings.fhir_server_url and settings.fhir_client_id):
            raise ValueError("SMART needs fhir_server_url and fhir_client_id")
        if settings.fhir_client_key_path is None:
            raise ValueError("SMART needs fhir_client_key_path")
        self.base = settings.fhir_server_url
        self.client_id = settings.fhir_client_id
        self.scopes = " ".join(settings.fhir_client_scopes.split())
        self._key_path = settings.fhir_client_key_path
        self._kid = settings.fhir_client_key_id
        self._token_url = settings.fhir_token_url
        self._client = client
        self._key: ClientKey | None = None
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A valid access token (cached; fetched when missing or 30 s from expiry)."""
        current = self._fresh()
        if current is not None:
            return current
        async with self._lock:
            current = self._fresh()
            if current is not None:
                return current
            return await self._renew()

    async def refresh(self, rejected: str) -> str:
        """A new token after the FHIR server refused `rejected` (unless another call already
        replaced it)."""
        async with self._lock:
            current = self._fresh()
            if current is not None and current != rejected:
                return current
            self._token = None
            return await self._renew()

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and time.monotonic() < token.refresh_at:
            return token.value
        return None

    async def _renew(self) -> str:
        token_url, audience = await self._discover()
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self._assertion(audience),
            "scope": self.scopes,
        }
        headers = {"Accept": "application/json"}
        status, body = await self._request("POST", token_url, headers, form)
        if status != 200:
            raise AuthorizationUnavailable(f"{_REFUSED} (HTTP {status}{_error_code(body)})")
        token = _token_from(body)
        self._token = token
        return token.value

    async def _discover(self) -> tuple[str, str]:
        """(the vetted token URL to POST to, the token URL as advertised: the assertion's aud);
        configured, or from the FHIR server's SMART configuration (kept once it is allowed)."""
        endpoint = self._token_url
        if endpoint is None:
            try:
                url = allowed_url(f"{self.base.rstrip('/')}/{_DISCOVERY}", self.base)
            except FetchNotAllowed as error:
                raise AuthorizationUnavailable(f"{_NO_TOKEN}: {error.detail}") from None
            status, body = await self._request("GET", url, {"Accept": "application/json"})
            document = _json(body) if status == 200 else None
            endpoint = document.get("token_endpoint") if document else None
            if not isinstance(endpoint, str) or not endpoint:
                raise AuthorizationUnavailable(
                    f"{_NO_TOKEN}: its SMART configuration names no token endpoint (HTTP {status})"
                )
        try:
            vetted = allowed_token_url(endpoint)
        except FetchNotAllowed as error:
            raise AuthorizationUnavailable(f"{_NO_TOKEN}: {error.detail}") from None
        self._token_url = endpoint
        return vetted, endpoint.strip()

    def _assertion(self, token_url: str) -> str:
        if self._key is None:
            try:
                self._key = load_client_key(self._key_path.read_bytes(), self._kid)
            except OSError:
                raise AuthorizationUnavailable(
                    f"{_NO_TOKEN}: the client key cannot be read"
                ) from None
            except ValueError as error:
                raise AuthorizationUnavailable(f"{_NO_TOKEN}: {error}") from None
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": str(uuid.uuid4()),
        }
        key = self._key
        return jwt.encode(
            claims, key.key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"}
        )

    async def _request(
        self, method: str, url: str, headers: dict[str, str], form: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body up to 64 KiB); transport failures → AuthorizationUnavailable."""
        try:
            request = self._client.build_request(method, url, headers=headers, data=form)
            response = await self._client.send(request, stream=True)
            try:
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > _ANSWER_LIMIT:
                        raise AuthorizationUnavailable(f"{_NO_TOKEN}: {_WHO} answered too much")
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise AuthorizationUnavailable(f"{_NO_TOKEN}: no answer in time from {_WHO}") from None
        except httpx.HTTPError as error:
            raise AuthorizationUnavailable(
                f"{_NO_TOKEN}: {_WHO} cannot be reached ({type(error).__name__})"
            ) from None


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        value = bounded_json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_code(body: bytes) -> str:
    """`, <error>` from an RFC 6749 §5.2 answer when it is a plain code; its text is not kept."""
    error = (_json(body) or {}).get("error")
    return f", {error}" if isinstance(error, str) and _ERROR_CODE.match(error) else ""


def _token_from(body: bytes) -> _Token:
    answer = _json(body) or {}
    value, kind = answer.get("access_token"), answer.get("token_type")
    if not isinstance(value, str) or not _TOKEN_CHARS.match(value):
        raise AuthorizationUnavailable(f"{_REFUSED}: its answer holds no usable access token")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise AuthorizationUnavailable(f"{_REFUSED}: its token is not a bearer token")
    expires_in = answer.get("expires_in", DEFAULT_EXPIRES_IN_S)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = DEFAULT_EXPIRES_IN_S
    return _Token(value, time.monotonic() + float(expires_in) - REFRESH_MARGIN_S)
