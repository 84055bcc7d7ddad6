"""Decompression bombs against a live server: `python benchmarks/bench_bombs.py [N]`.

Starts the service on loopback, fires N deflated-DICOM bombs (1 GB inflated) and N PNG bombs
(40 MP in ~115 KB) concurrently while polling /health, and prints the server's RSS growth per
bomb and /health p50/p99 during the attack. Targets: < 100 MB per bomb, /health p99 < 1 s.
Then six genuine 24 MP PNGs (a skin6 photo upscaled, when ../shared is present), which decode
in the bounded pool: /health must stay responsive while they are decoded and classified.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.bombs import deflate_bomb, png_bomb
from tests.support.live_server import LiveServer, start_server, stop_server


async def attack(server: LiveServer, bombs: list[tuple[str, bytes]]) -> dict[str, object]:
    """Post every bomb at once while /health is polled; statuses and /health latencies."""
    latencies: list[float] = []
    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:

        async def poll() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await client.get("/health")
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

        async def post(media_type: str, body: bytes) -> int:
            r = await client.post(
                "/api/v1/classify", content=body, headers={"content-type": media_type}
            )
            return r.status_code

        poller = asyncio.create_task(poll())
        statuses = await asyncio.gather(*(post(kind, body) for kind, body in bombs))
        done.set()
        await poller
    return {"statuses": statuses, "latencies": latencies}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def heavy_png() -> bytes | None:
    """A genuine 6000 x 4000 PNG (~10 MB) made from a skin6 photo, or None without ../shared."""
    root = os.environ.get("SKINSCREEN_SHARED_DIR")
    root_dir = Path(root) if root else Path(__file__).resolve().parent.parent.parent / "shared"
    shared = root_dir / "data" / "skin6" / "val"
    found = sorted((shared / "Acne").glob("*.jpg"))[:1] if shared.is_dir() else []
    if not found:
        return None
    buffer = io.BytesIO()
    Image.open(found[0]).convert("RGB").resize((6000, 4000)).save(buffer, format="PNG")
    return buffer.getvalue()


def report(label: str, latencies: list[float]) -> None:
    print(
        f"/health during {label}: n={len(latencies)} "
        f"p50={statistics.median(latencies) * 1000:.0f} ms "
        f"p99={quantile(latencies, 0.99) * 1000:.0f} ms max={max(latencies) * 1000:.0f} ms"
    )


def main(count: int) -> None:
    bombs = [("application/dicom", deflate_bomb(1 << 30))] * count + [
        ("image/png", png_bomb(6300, 6300))
    ] * count
    heavy = heavy_png()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            process = psutil.Process(server.process.pid)
            before = process.memory_info().rss
            result = asyncio.run(attack(server, bombs))
            grown = max(process.memory_info().rss - before, 0)
            genuine = asyncio.run(attack(server, [("image/png", heavy)] * 6)) if heavy else None
        finally:
            stop_server(server)
    latencies = result["latencies"]
    assert isinstance(latencies, list)
    print(f"bombs: {len(bombs)} ({count} deflated DICOM 1 GB, {count} PNG 40 MP)")
    print(f"statuses: {sorted(set(result['statuses']))}")  # type: ignore[call-overload]
    print(
        f"server RSS growth: {grown / 2**20:.0f} MB total, {grown / 2**20 / len(bombs):.1f} MB/bomb"
    )
    report("the bombs", latencies)
    if genuine is not None:
        print(f"6 genuine 24 MP PNGs: statuses {sorted(set(genuine['statuses']))}")  # type: ignore[call-overload]
        report("genuine 24 MP PNGs", genuine["latencies"])  # type: ignore[arg-type]


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
