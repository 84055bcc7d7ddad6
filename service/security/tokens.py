"""Access tokens we sign (ES384) and the client assertions we accept (SMART Backend Services).

Our signing key is an EC P-384 key in a PEM file (generated, mode 0600, at first start unless
configured); its public half is served as a JWKS. A client assertion (RFC 7523) must be signed
RS384 or ES384 by a key in the client's JWKS, with iss = sub = the client id, aud = our token
URL, an `exp` at most 5 minutes ahead and a `jti` not seen before. All JWT work is PyJWT's.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.security.clients import Client
from service.store.private_files import private_dir

ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME_S = 300


class AssertionRejected(Exception):
    """The client assertion is not acceptable; `str()` is a safe description."""


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The signing key in `path`, generated there (0600) when it does not exist yet."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path.name} is not an EC private key")
        return key
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


@dataclass(frozen=True)
class Grant:
    """A verified access token: who and which scopes."""

    client_id: str
    scopes: frozenset[str]
    issuer: str


class TokenIssuer:
    """Signs and verifies our access tokens; checks client assertions."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str, lifetime_s: int = 300):
        self.key = key
        self.issuer = issuer
        self.lifetime_s = min(lifetime_s, 300)
        public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.kid = _thumbprint(public)
        self.jwks = {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES384"}]}
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, client_id: str, scopes: frozenset[str]) -> tuple[str, int]:
        """(access token, expires_in)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": self.issuer,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": uuid.uuid4().hex,
            "scope": " ".join(sorted(scopes)),
        }
        token = jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": self.kid})
        return token, self.lifetime_s

    def verify(self, token: str) -> Grant:
        """Our own access token → its grant (raises jwt.InvalidTokenError)."""
        claims = jwt.decode(
            token,
            self.key.public_key(),
            algorithms=["ES384"],
            audience=self.issuer,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
        scopes = frozenset(str(claims.get("scope", "")).split())
        return Grant(str(claims["sub"]), scopes, self.issuer)

    def check_assertion(self, assertion: str, client: Client, token_url: str) -> tuple[str, float]:
        """Raise AssertionRejected unless the assertion proves `client` (see module docstring);
        returns (its single-use key, its expiry) for the shared record of used assertions."""
        if not client.jwks or not client.jwks.get("keys"):
            raise AssertionRejected("the client has no registered public keys")
        try:
            header = jwt.get_unverified_header(assertion)
            keys = jwt.PyJWKSet.from_dict(client.jwks)
            candidates = [k for k in keys.keys if header.get("kid") in (None, k.key_id)]
            if not candidates:
                raise AssertionRejected("no registered key matches the assertion's kid")
            claims: dict[str, Any] | None = None
            for candidate in candidates:
                try:
                    claims = jwt.decode(
                        assertion,
                        candidate.key,
                        algorithms=ASSERTION_ALGORITHMS,
                        audience=token_url,
                        issuer=client.id,
                        options={"require": ["exp", "jti", "iss", "sub", "aud"]},
                    )
                    break
                except jwt.InvalidSignatureError:
                    continue
            if claims is None:
                raise AssertionRejected("the assertion's signature does not verify")
        except jwt.ExpiredSignatureError:
            raise AssertionRejected("the assertion has expired") from None
        except jwt.InvalidAudienceError:
            raise AssertionRejected("the assertion's aud is not this token URL") from None
        except jwt.InvalidTokenError as exc:
            raise AssertionRejected(f"the assertion is not valid ({type(exc).__name__})") from None
        if claims.get("sub") != client.id:
            raise AssertionRejected("the assertion's sub is not the client id")
        if int(claims["exp"]) > time.time() + MAX_ASSERTION_LIFETIME_S + 5:
            raise AssertionRejected("the assertion's exp is more than 5 minutes ahead")
        key, until = f"{client.id}:{claims['jti']}", float(claims["exp"])
        self._single_use(key, until)
        return key, until

    def _single_use(self, key: str, until: float) -> None:
        now = time.time()
        with self._lock:
            for stale in [k for k, exp in self._seen.items() if exp < now]:
                del self._seen[stale]
            if key in self._seen:
                raise AssertionRejected("the assertion's jti was already used")
            self._seen[key] = until


def _thumbprint(jwk: dict[str, Any]) -> str:
    import base64
    import hashlib

    members = {k: jwk[k] for k in ("crv", "kty", "x", "y") if k in jwk}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
