"""Scale-out figures: workers, queue wait, SSE through another replica, /metrics, classify.

Run: .venv/bin/python benchmarks/bench_scale_out.py [--cases 20]. Starts a throwaway
PostgreSQL (Debian's package) and real processes on loopback; prints medians and ratios.
No assertions: these machines are shared and noisy (2 cores run every process here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.images import load_rgb  # noqa: E402
from service.logging import configure_logging  # noqa: E402
from service.pipeline.backends import load_classifier  # noqa: E402
from service.pipeline.ood import forward  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.support.live_server import (  # noqa: E402
    WorkerProcess,
    start_server,
    start_worker,
    stop_server,
)
from tests.support.postgres import start_postgres  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def first_event_ms(client: httpx.AsyncClient, photo: bytes) -> tuple[str, float]:
    """(job id, ms from POST to the `accepted` event arriving)."""
    started = time.perf_counter()
    files = {"image": ("p.jpg", photo, "image/jpeg")}
    async with client.stream("POST", "/api/v1/diagnose-stream", files=files) as response:
        job_id = response.headers["x-job-id"]
        async for line in response.aiter_lines():
            if line == "event: accepted":
                return job_id, (time.perf_counter() - started) * 1000
    raise RuntimeError("no accepted event")


async def run_cases(url: str, photo: bytes, n: int) -> tuple[float, list[float]]:
    """Submit n cases at once; (seconds until all completed, first-event latencies in ms)."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        firsts = await asyncio.gather(*(first_event_ms(client, photo) for _ in range(n)))

        async def done(job_id: str) -> None:
            while (await client.get(f"/api/v1/jobs/{job_id}")).json()["status"] != "completed":
                await asyncio.sleep(0.2)

        await asyncio.gather(*(done(job_id) for job_id, _ in firsts))
        return time.perf_counter() - started, [ms for _, ms in firsts]


async def classify_rate(url: str, photos: list[bytes], clients: int, n: int) -> float:
    """Images/s of n classify calls over `clients` concurrent connections."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        queue = list(range(n))

        async def loop() -> None:
            while queue:
                i = queue.pop()
                files = {"image": ("p.jpg", photos[i % len(photos)], "image/jpeg")}
                (await client.post("/api/v1/classify", files=files)).raise_for_status()

        await asyncio.gather(*(loop() for _ in range(4)))  # warm-up connections
        queue[:] = list(range(n))
        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        return n / (time.perf_counter() - started)


def batch8_rate(settings: Settings, paths: list[Path], rounds: int = 20) -> float:
    classifier = load_classifier(settings, "effnet")
    images = [load_rgb(p) for p in paths[:8]]
    forward(classifier, images)
    started = time.perf_counter()
    for _ in range(rounds):
        forward(classifier, images)
    return rounds * len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    settings = Settings()
    paths = sorted((settings.shared_dir / "data" / "skin6" / "val").glob("*/*.jpg"))[::9][:24]
    photos = [p.read_bytes() for p in paths]
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    quiet = {"SKINSCREEN_LOG_LEVEL": "WARNING", "SKINSCREEN_REPORT_HEATMAP": "false"}

    # classify: 16 concurrent clients vs the onnxruntime batch-of-8 rate, with and without
    # micro-batching
    rate8 = batch8_rate(settings, paths)
    for batch in ("1", "8"):
        server = start_server(
            tmp, {**quiet, "SKINSCREEN_CLASSIFY_MAX_BATCH": batch}, name=f"c{batch}"
        )
        try:
            rate = asyncio.run(classify_rate(server.url, photos, 16, 160))
        finally:
            stop_server(server)
        print(
            f"classify, 16 clients, max batch {batch}: {rate:.0f} img/s = {rate / rate8:.2f}× "
            f"the batch-of-8 rate ({rate8:.0f} img/s)"
        )

    # the owning replica (embedded SQLite, in-process worker): first event latency
    server = start_server(tmp, quiet, name="own")
    try:
        seconds, owning = asyncio.run(run_cases(server.url, photos[0], 5))
        scrape = []
        for _ in range(30):
            started = time.perf_counter()
            httpx.get(f"{server.url}/metrics", timeout=10).raise_for_status()
            scrape.append((time.perf_counter() - started) * 1000)
    finally:
        stop_server(server)
    print(f"/metrics scrape: p50 {statistics.median(scrape):.1f} ms")

    postgres = start_postgres(Path(tempfile.mkdtemp(prefix="bench-pg-")))
    try:
        for workers in (1, 2):
            dsn = postgres.create_database(f"b{uuid.uuid4().hex[:8]}")
            env = {**quiet, "SKINSCREEN_DATABASE_URL": dsn}
            worker_env = {**env, "SKINSCREEN_LOG_LEVEL": "INFO"}  # start_worker reads its log
            api = start_server(tmp, env, args=("--no-worker",), name=f"api{workers}")
            procs: list[WorkerProcess] = []
            try:
                procs.extend(
                    start_worker(tmp, worker_env, concurrency=2, name=f"w{workers}-{i}")
                    for i in range(workers)
                )
                seconds, _ = asyncio.run(run_cases(api.url, photos[0], args.cases))
                print(
                    f"{workers} worker(s) × 2: {args.cases / seconds * 60:.0f} cases/min "
                    f"({args.cases} cases in {seconds:.1f} s)"
                )
                if workers == 2:
                    _, waits = asyncio.run(run_cases(api.url, photos[0], 50))
                    print(
                        f"50 concurrent submissions: first event p50 {pct(waits, 0.5):.0f} ms, "
                        f"p99 {pct(waits, 0.99):.0f} ms (queue wait + claim)"
                    )
                    _, other = asyncio.run(run_cases(api.url, photos[0], 5))
                    print(
                        f"SSE first event via a non-owning replica (PostgreSQL NOTIFY) p50 "
                        f"{statistics.median(other):.0f} ms vs owning replica "
                        f"{statistics.median(owning):.0f} ms = "
                        f"{statistics.median(other) / statistics.median(owning):.2f}×"
                    )
            finally:
                stop_server(api)
                for proc in procs:
                    proc.process.terminate()
                    proc.process.wait(timeout=30)
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
