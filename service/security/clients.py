"""The client registry: who may call the service, with which scopes and credentials.

A JSON file (`SKINSCREEN_CLIENTS_FILE`, default data_dir/clients.json):
`{"clients": [{"id", "name", "scopes": [...], "api_key_sha256": ["<hex>", ...],
"jwks": {...} | "jwks_path": "..."}]}`. Only the SHA-256 of an API key is stored; keys are
compared in constant time. The file is re-read when it changes (checked at most once a second)
or on SIGHUP. `add_client` writes a new entry (file mode 0600) and returns the key once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.logging import get_logger
from service.security.scopes import valid
from service.store.private_files import private_dir

log = get_logger(__name__)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Client:
    """One registered client."""

    id: str
    name: str
    scopes: frozenset[str]
    api_key_sha256: tuple[str, ...] = ()
    jwks: dict[str, Any] | None = field(default=None, compare=False)


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def _client(entry: dict[str, Any], base: Path) -> Client:
    client_id = str(entry["id"])
    if not _ID.match(client_id):
        raise ValueError(f"client id {client_id[:40]!r} is not a valid id")
    scopes = frozenset(str(s) for s in entry.get("scopes", []))
    bad = sorted(s for s in scopes if not valid(s))
    if bad:
        raise ValueError(f"client {client_id}: invalid scopes {bad}")
    jwks = entry.get("jwks")
    if jwks is None and entry.get("jwks_path"):
        jwks = json.loads((base / str(entry["jwks_path"])).read_text(encoding="utf-8"))
    digests = tuple(str(d).lower() for d in entry.get("api_key_sha256", []))
    return Client(client_id, str(entry.get("name", client_id)), scopes, digests, jwks)


class ClientRegistry:
    """Clients by id and by API key; reloads its file when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._clients: dict[str, Client] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self.reload()

    def reload(self) -> None:
        """Read the file again (a broken file keeps the previous clients and logs an error)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._clients, self._mtime = {}, None
            return
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
            clients = [_client(entry, self.path.parent) for entry in body.get("clients", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("clients.unreadable", error=type(exc).__name__)
            return
        self._clients = {client.id: client for client in clients}
        self._mtime = stat.st_mtime
        log.info("clients.loaded", clients=len(self._clients))

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime: float | None = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self.reload()

    def get(self, client_id: str) -> Client | None:
        self._fresh()
        return self._clients.get(client_id)

    def by_api_key(self, api_key: str) -> Client | None:
        """The client holding this key; every stored digest is compared in constant time."""
        self._fresh()
        digest = key_digest(api_key)
        found = None
        for client in self._clients.values():
            for stored in client.api_key_sha256:
                if hmac.compare_digest(stored, digest):
                    found = client
        return found


def add_client(
    path: Path, name: str, scopes: list[str], jwks_file: Path | None = None
) -> tuple[str, str]:
    """Add a client to the registry file; returns (client id, the new API key, shown once)."""
    bad = sorted(s for s in scopes if not valid(s))
    if bad:
        raise ValueError(f"invalid scopes: {bad}")
    body: dict[str, Any] = {"clients": []}
    if path.exists():
        body = json.loads(path.read_text(encoding="utf-8"))
    client_id = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip().lower()).strip("-")[:48] or "client"
    taken = {str(c.get("id")) for c in body["clients"]}
    base, n = client_id, 2
    while client_id in taken:
        client_id, n = f"{base}-{n}", n + 1
    api_key = "sk_" + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {
        "id": client_id,
        "name": name,
        "scopes": scopes,
        "api_key_sha256": [key_digest(api_key)],
    }
    if jwks_file is not None:
        entry["jwks"] = json.loads(jwks_file.read_text(encoding="utf-8"))
    body["clients"].append(entry)
    private_dir(path.parent)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=2)
    os.replace(temporary, path)
    return client_id, api_key
