"""Who is calling, and may they: the `Authenticator` and the route guard every handler passes.

Credentials: `Authorization: Bearer <API key | access token>` or `X-API-Key: <API key>`. An
access token is ours (signed by `TokenIssuer`) or, when configured, from a trusted issuer
(`SKINSCREEN_TRUSTED_ISSUERS`: issuer → JWKS file). Every route declares what it needs in its
`opt`: `{"public": True}` or `{"scopes": [...]}`; the guard refuses anything else (a route
without a rule is closed, and `tests/app/test_route_scopes.py` fails CI for it). With auth
`off` (loopback only) every caller is the anonymous administrator, as before authentication.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from service.errors import InsufficientScope, TooManyRequests, Unauthorized
from service.security import scopes as sc
from service.security.clients import ClientRegistry
from service.security.tokens import TokenIssuer

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    client_id: str
    scopes: frozenset[str]
    via: str  # "off" | "api_key" | "token"

    def allows(self, needed: str) -> bool:
        return sc.allows(self.scopes, needed)

    def sees_all(self, needed: str) -> bool:
        """An administrator for `needed`: other clients' cases are visible."""
        return sc.is_admin(self.scopes, needed)

    def may_see(self, meta: dict[str, Any], needed: str) -> bool:
        """The owner (`meta["client"]` of a job) or an administrator for `needed`."""
        return meta.get("client", ANONYMOUS) == self.client_id or self.sees_all(needed)


NOBODY = Principal(ANONYMOUS, frozenset({sc.ALL}), "off")


class RateLimiter:
    """At most `per_minute` requests per client in any sliding minute (per process)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}

    def check(self, client_id: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        hits = self._hits.setdefault(client_id, deque())
        while hits and hits[0] <= now - 60:
            hits.popleft()
        if len(hits) >= self.per_minute:
            raise TooManyRequests(
                f"more than {self.per_minute} requests in a minute",
                retry_after=max(1, int(hits[0] + 60 - now) + 1),
            )
        hits.append(now)


class Authenticator:
    """Turns request headers into a `Principal` (or a 401)."""

    def __init__(
        self,
        on: bool,
        registry: ClientRegistry,
        issuer: TokenIssuer,
        trusted: dict[str, dict[str, Any]] | None = None,
        rate_limit_per_minute: int = 0,
    ) -> None:
        self.on, self.registry, self.issuer = on, registry, issuer
        self.trusted = trusted or {}
        self.limiter = RateLimiter(rate_limit_per_minute if on else 0)

    def authenticate(self, headers: Any) -> Principal:
        if not self.on:
            return NOBODY
        secret = headers.get("x-api-key")
        authorization = headers.get("authorization", "")
        if not secret and authorization[:7].lower() == "bearer ":
            secret = authorization[7:].strip()
        if not secret:
            raise Unauthorized("send an API key (X-API-Key or Bearer) or a bearer access token")
        principal = self._token(secret) if secret.count(".") == 2 else self._api_key(secret)
        self.limiter.check(principal.client_id)
        return principal

    def _api_key(self, key: str) -> Principal:
        client = self.registry.by_api_key(key)
        if client is None:
            raise Unauthorized("the API key is not valid")
        return Principal(client.id, client.scopes, "api_key")

    def _token(self, token: str) -> Principal:
        try:
            issuer = str(jwt.decode(token, options={"verify_signature": False}).get("iss", ""))
            if issuer == self.issuer.issuer:
                grant = self.issuer.verify(token)
            elif issuer in self.trusted:
                grant = _verify_external(token, issuer, self.trusted[issuer], self.issuer.issuer)
            else:
                raise Unauthorized("the access token's issuer is not trusted")
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the access token is not valid") from None
        client = self.registry.get(grant.client_id)
        granted = grant.scopes if client is None else grant.scopes & client.scopes
        if client is None and grant.issuer == self.issuer.issuer:
            raise Unauthorized("the access token's client is no longer registered")
        return Principal(grant.client_id, frozenset(granted), "token")


def _verify_external(token: str, issuer: str, jwks: dict[str, Any], audience: str) -> Any:
    from service.security.tokens import Grant

    keys = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token).get("kid")
    for key in keys.keys:
        if kid in (None, key.key_id):
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "ES256", "ES384"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
            scopes = frozenset(str(claims.get("scope", "")).split())
            return Grant(str(claims["sub"]), scopes, issuer)
    raise jwt.InvalidSignatureError("no key of the trusted issuer matches")


def load_trusted(spec: str | None) -> dict[str, dict[str, Any]]:
    """`{"issuer": "path/to/jwks.json" | {jwks}}` → issuer → JWKS."""
    if not spec:
        return {}
    body = json.loads(spec)
    return {
        str(issuer): value if isinstance(value, dict) else json.loads(Path(value).read_text())
        for issuer, value in body.items()
    }


def check_scopes(principal: Principal, needed: list[str]) -> None:
    """403 unless the principal holds every needed scope."""
    for scope in needed:
        if not principal.allows(scope):
            raise InsufficientScope(f"this request needs the scope {scope}", scope=scope)
