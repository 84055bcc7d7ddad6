"""Tools for integrators: a key pair for private_key_jwt, and a signed client assertion.

`skinscreen clients keygen` writes an RSA private key (PEM, 0600) and its public JWKS (to
register with `clients add --jwks`); `skinscreen clients assertion` prints a client assertion
for `POST /auth/token` (RS384, iss = sub = the client id, aud = the token URL, 5 minutes).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def keygen(private_path: Path, jwks_path: Path, kid: str = "key-1") -> None:
    """A 3072-bit RSA key (PEM, mode 0600) and the JWKS of its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = {"keys": [{**public, "kid": kid, "alg": "RS384", "use": "sig"}]}
    jwks_path.write_text(json.dumps(jwks, indent=2), encoding="utf-8")


def assertion(client_id: str, private_path: Path, token_url: str, kid: str = "key-1") -> str:
    """A client assertion valid for 5 minutes, usable once."""
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    algorithm = "RS384" if isinstance(key, rsa.RSAPrivateKey) else "ES384"
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})  # type: ignore[arg-type]
