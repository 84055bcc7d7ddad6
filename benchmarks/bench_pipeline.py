"""Pipeline timings: first SSE byte, knowledge-path diagnose incl. PDF, 20 concurrent streams.

Run: .venv/bin/python benchmarks/bench_pipeline.py [--n 10] [--streams 20]. Prints medians.
No assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.bootstrap import build_services  # noqa: E402
from service.intake.cases import case_from_fields  # noqa: E402
from service.logging import configure_logging  # noqa: E402
from service.pipeline.case import MemorySink  # noqa: E402
from service.pipeline.run import run_case  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.support.live_server import start_server, stop_server  # noqa: E402


def in_process_diagnose(settings: Settings, photo: bytes, language: str, n: int) -> float:
    """Median ms of a full knowledge-path run (gate, classify, narrate, PDF, FHIR, DICOM)."""
    services = build_services(settings, store_path=":memory:")
    fields = {"patient_name": "Bench", "patient_age": "40", "language": language}

    async def once() -> float:
        intake = case_from_fields(photo, "image/jpeg", fields, None, services.limits)
        started = time.perf_counter()
        deps = services.jobs.deps
        async for event in run_case(deps, intake.case, intake.rgb, MemorySink()):
            assert event.name != "error", event.data
        return (time.perf_counter() - started) * 1000

    async def many() -> list[float]:
        await once()
        return [await once() for _ in range(n)]

    return statistics.median(asyncio.run(many()))


async def stream_once(client: httpx.AsyncClient, photo: bytes) -> tuple[float, float, str]:
    """(ms to first byte, ms to the end, last event name) of one diagnose-stream."""
    started = time.perf_counter()
    first = 0.0
    last = ""
    async with client.stream(
        "POST", "/api/v1/diagnose-stream", files={"image": ("p.jpg", photo, "image/jpeg")}
    ) as response:
        async for line in response.aiter_lines():
            if not first:
                first = (time.perf_counter() - started) * 1000
            if line.startswith("event: "):
                last = line[7:]
    return first, (time.perf_counter() - started) * 1000, last


async def over_http(url: str, photo: bytes, n: int, streams: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await stream_once(client, photo)
        sequential = [await stream_once(client, photo) for _ in range(n)]
        print(
            f"first SSE byte p50 {statistics.median(s[0] for s in sequential):7.1f} ms "
            f"(upload + decode + job start); whole stream p50 "
            f"{statistics.median(s[1] for s in sequential):7.1f} ms"
        )
        started = time.perf_counter()
        results = await asyncio.gather(*(stream_once(client, photo) for _ in range(streams)))
        wall = (time.perf_counter() - started) * 1000
        ok = sum(1 for r in results if r[2] == "completed")
        print(
            f"{streams} concurrent streams: {ok}/{streams} completed, "
            f"{streams - ok} errors, wall {wall:.0f} ms, "
            f"first byte p50 {statistics.median(r[0] for r in results):.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--streams", type=int, default=20)
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    settings = Settings()
    photo = sorted((settings.shared_dir / "data/skin6/val/Acne").glob("*.jpg"))[0].read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp)})
        for language in ("en", "ko", "vi"):
            ms = in_process_diagnose(local, photo, language, args.n)
            print(f"in-process knowledge-path diagnose incl. PDF [{language}] p50 {ms:7.1f} ms")
        server = start_server(Path(tmp))
        try:
            asyncio.run(over_http(server.url, photo, args.n, args.streams))
        finally:
            stop_server(server)


if __name__ == "__main__":
    main()
