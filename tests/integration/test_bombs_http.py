"""Decompression bombs through real HTTP: a clean 413 (a STOW failure entry), and /health keeps
answering while they are refused (decoding runs in the bounded decode pool, not on the loop)."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.support.bombs import deflate_bomb, png_bomb
from tests.support.live_server import LiveServer


def test_bombs_are_413_and_health_answers_meanwhile(live_server: LiveServer) -> None:
    bombs = [("application/dicom", deflate_bomb(512 << 20))] * 4 + [
        ("image/png", png_bomb(6300, 6300))
    ] * 4

    async def attack() -> tuple[list[int], list[float]]:
        latencies: list[float] = []
        done = asyncio.Event()
        async with httpx.AsyncClient(base_url=live_server.url, timeout=120) as client:

            async def poll() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    assert (await client.get("/health")).status_code == 200
                    latencies.append(time.perf_counter() - started)
                    await asyncio.sleep(0.02)

            async def post(kind: str, body: bytes) -> int:
                r = await client.post(
                    "/api/v1/classify", content=body, headers={"content-type": kind}
                )
                assert r.headers["content-type"].startswith("application/problem+json")
                return r.status_code

            poller = asyncio.create_task(poll())
            statuses = await asyncio.gather(*(post(k, b) for k, b in bombs))
            done.set()
            await poller
        return statuses, latencies

    statuses, latencies = asyncio.run(attack())
    assert statuses == [413] * len(bombs)
    assert latencies and max(latencies) < 2  # hang guard; numbers: benchmarks/bench_bombs.py


def test_a_stow_deflate_bomb_is_a_failed_sop_entry(live_server: LiveServer) -> None:
    boundary = "b0mb"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + deflate_bomb(256 << 20)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = httpx.post(
        f"{live_server.url}/dicomweb/studies",
        content=body,
        headers={
            "content-type": f'multipart/related; type="application/dicom"; boundary={boundary}'
        },
        timeout=60,
    )
    assert r.status_code == 409, r.text  # every instance failed
    failed = r.json()["00081198"]["Value"][0]
    assert failed["00081150"]["Value"] == ["1.2.840.10008.5.1.4.1.1.77.1.4"]  # from File Meta
