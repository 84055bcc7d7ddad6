"""SMART Backend Services for our own API, and the guard every route passes.

`GET /.well-known/smart-configuration` (and under `/fhir/`), `GET /auth/jwks`, and
`POST /auth/token` (client_credentials with a `private_key_jwt` client assertion; errors per
RFC 6749 §5.2). `auth_guard` authenticates and checks the scopes a route declares in its `opt`.
"""

from __future__ import annotations

from typing import Any

import jwt
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.errors import Forbidden, ServiceError
from service.security import scopes as sc
from service.security.guard import NOBODY, Principal, check_scopes
from service.security.setup import Security
from service.security.tokens import AssertionRejected

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OPEN = {"public": True}
SCOPES_SUPPORTED = sorted(
    {sc.CREATE_REPORT, sc.READ_REPORT, sc.REVIEW_REPORT, sc.DELETE_REPORT, sc.STORE_IMAGE,
     sc.READ_IMAGE, sc.READ_AUDIT, sc.READ_METRICS}
)  # fmt: skip


def security_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Security:
    security: Security = connection.app.state.security
    return security


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The caller the guard authenticated (the anonymous administrator with auth off)."""
    principal = connection.scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else NOBODY


async def auth_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Authenticate and check the route's scopes; a route without a rule is closed."""
    opt = handler.opt or {}
    methods = getattr(handler, "http_methods", None)
    if opt.get("public") or (methods == {"OPTIONS"} and "scopes" not in opt):
        return  # Litestar's own OPTIONS answers (an Allow header, no data) stay open
    principal = security_of(connection).authenticator.authenticate(connection.headers)
    connection.scope.setdefault("state", {})["principal"] = principal
    needed = opt.get("scopes")
    if not isinstance(needed, list) or not needed:
        raise Forbidden("this route has no access rule")
    check_scopes(principal, needed)


def smart_configuration(security: Security) -> dict[str, Any]:
    """The SMART App Launch 2.x discovery document (backend services part)."""
    return {
        "issuer": security.base_url,
        "jwks_uri": f"{security.base_url}/auth/jwks",
        "token_endpoint": security.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }


@get(["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"], opt=OPEN)
async def smart_config(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Where and how to get an access token."""
    return smart_configuration(security_of(request))


@get("/auth/jwks", opt=OPEN)
async def jwks(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The public key our access tokens are signed with."""
    return security_of(request).issuer.jwks


def _oauth_error(error: str, description: str, status: int = 400) -> Response[Any]:
    return Response(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@post("/auth/token", opt=OPEN, status_code=200)
async def token(request: Request[Any, Any, Any]) -> Response[Any]:
    """client_credentials + private_key_jwt → a signed access token (≤ 300 s)."""
    security = security_of(request)
    if request.content_type[0] != "application/x-www-form-urlencoded":
        return _oauth_error("invalid_request", "send application/x-www-form-urlencoded")
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if fields.get("grant_type") != "client_credentials":
        return _oauth_error("unsupported_grant_type", "only client_credentials is supported")
    assertion = fields.get("client_assertion", "")
    if fields.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
        return _oauth_error("invalid_client", "a private_key_jwt client assertion is required", 401)
    try:
        client_id = str(jwt.decode(assertion, options={"verify_signature": False}).get("iss"))
    except jwt.InvalidTokenError:
        return _oauth_error("invalid_client", "the client assertion is not a JWT", 401)
    client = security.registry.get(client_id)
    if client is not None:  # the audit record names who asked
        request.scope.setdefault("state", {})["principal"] = Principal(
            client.id, frozenset(), "assertion"
        )
    if client is None:
        return _oauth_error("invalid_client", "unknown client", 401)
    try:
        once, until = security.issuer.check_assertion(assertion, client, security.token_url)
    except AssertionRejected as exc:
        return _oauth_error("invalid_client", str(exc), 401)
    services = getattr(request.app.state, "services", None)
    if services is not None and not await services.store.use_once(once, until):
        return _oauth_error("invalid_client", "the assertion's jti was already used", 401)
    requested = fields.get("scope", "").split() or sorted(client.scopes)
    refused = [s for s in requested if not sc.valid(s) or not sc.allows(client.scopes, s)]
    if refused:
        return _oauth_error("invalid_scope", f"not granted to this client: {' '.join(refused)}")
    access_token, expires_in = security.issuer.issue(client.id, frozenset(requested))
    body = {
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": expires_in,
        "scope": " ".join(requested),
    }
    return Response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


AUTH_ROUTES = [smart_config, jwks, token]
__all__ = ["AUTH_ROUTES", "ServiceError", "auth_guard", "principal_of"]
