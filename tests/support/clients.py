"""The API clients registry (`SKINSCREEN_CLIENTS_FILE`) for tests: one entry per client id."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from service.security.clients import key_digest


def write_clients(path: Path, clients: dict[str, tuple[Sequence[str], str]]) -> Path:
    """Write `{client id: (scopes, api key)}` as the registry file at `path`; returns `path`."""
    entries = [
        {"id": client, "scopes": list(scopes), "api_key_sha256": [key_digest(key)]}
        for client, (scopes, key) in clients.items()
    ]
    path.write_text(json.dumps({"clients": entries}), encoding="utf-8")
    return path
