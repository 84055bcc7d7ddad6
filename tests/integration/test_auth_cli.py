"""The README's set-up, as an integrator would type it: CLI-made clients, a live server with
auth on, an API key, and a SMART Backend Services token from a CLI-made assertion."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.factories import jpeg
from tests.support.live_server import free_port, start_server, stop_server


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_the_readme_setup_works(tmp_path: Path) -> None:
    import os

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "SKINSCREEN_DATA_DIR": str(tmp_path / "data"),
        "SKINSCREEN_CLIENTS_FILE": str(tmp_path / "clients.json"),
        "SKINSCREEN_AUTH": "on",
        "SKINSCREEN_PUBLIC_BASE_URL": base,
    }
    added = cli(env, "clients", "add", "Clinic A", "--scopes", "system/DiagnosticReport.cruds")
    api_key = re.search(r"(sk_[A-Za-z0-9_-]+)", added)
    assert api_key is not None and "clinic-a" in added
    assert api_key.group(1) not in (tmp_path / "clients.json").read_text()  # only its digest
    pem, jwks = tmp_path / "ehr-1.pem", tmp_path / "ehr-1.jwks.json"
    cli(env, "clients", "keygen", "--private-key", str(pem), "--jwks", str(jwks))
    assert oct(pem.stat().st_mode & 0o777) == "0o600"
    cli(
        env,
        "clients",
        "add",
        "EHR 1",
        "--scopes",
        "system/DiagnosticReport.cr",
        "--jwks",
        str(jwks),
    )
    server = start_server(
        tmp_path, {k: v for k, v in env.items() if k.startswith("SKINSCREEN_")}, port=port
    )
    try:
        photo = {"image": ("p.jpg", jpeg(), "image/jpeg")}
        assert httpx.post(f"{base}/api/v1/classify", files=photo).status_code == 401
        keyed = httpx.post(
            f"{base}/api/v1/classify", files=photo, headers={"X-API-Key": api_key.group(1)}
        )
        assert keyed.status_code == 200, keyed.text
        signed = cli(
            env, "clients", "assertion", "ehr-1", "--private-key", str(pem),
            "--token-url", f"{base}/auth/token",
        ).strip()  # fmt: skip
        answer = httpx.post(
            f"{base}/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": signed,
                "scope": "system/DiagnosticReport.cr",
            },
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        run = httpx.post(
            f"{base}/api/v1/classify", files=photo, headers={"Authorization": f"Bearer {token}"}
        )
        assert run.status_code == 200
        assert api_key.group(1) not in server.logs() and token not in server.logs()
    finally:
        stop_server(server)
    refused = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--host", "0.0.0.0", "--port", str(port)],
        env={**env, "SKINSCREEN_AUTH": "off"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "loopback" in refused.stderr
