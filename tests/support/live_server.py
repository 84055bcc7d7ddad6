"""A real uvicorn server in a subprocess on loopback, for tests and benchmarks that need true
HTTP (streaming, several processes, a browser)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """Base URL and log file of a running server."""

    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_server(
    tmp: Path,
    env_overrides: dict[str, str] | None = None,
    *,
    args: tuple[str, ...] = (),
    port: int | None = None,
    name: str = "server",
) -> LiveServer:
    """Start `python -m service serve [args]` and wait until /ready answers 200."""
    port = port or free_port()
    env = {
        **os.environ,
        "SKINSCREEN_DATA_DIR": str(tmp / "data"),
        "SKINSCREEN_LOG_JSON": "true",
        **(env_overrides or {}),
    }
    log_path = tmp / f"{name}.log"
    handle = log_path.open("ab")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "service", "serve", *args),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return LiveServer(url, log_path, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server not ready in 60 s:\n{log_path.read_text()}")


def stop_server(server: LiveServer) -> None:
    """Terminate and reap."""
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@dataclass
class WorkerProcess:
    """A `skinscreen worker` process and its log."""

    log_path: Path
    process: subprocess.Popen[bytes]

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_worker(
    tmp: Path, env_overrides: dict[str, str], *, concurrency: int = 4, name: str = "worker"
) -> WorkerProcess:
    """Start `python -m service worker` and wait for its `worker.started` log line."""
    env = {**os.environ, "SKINSCREEN_LOG_JSON": "true", **env_overrides}
    log_path = tmp / f"{name}.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    handle = log_path.open("ab")
    argv = [sys.executable, "-m", "service", "worker", "--concurrency", str(concurrency)]
    process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{log_path.read_text()}")
        if "worker.started" in log_path.read_text(errors="replace")[offset:]:
            return WorkerProcess(log_path, process)
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"worker not started in 60 s:\n{log_path.read_text()}")
