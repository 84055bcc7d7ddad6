"""Classification latency: in-process ONNX vs HTTP (real uvicorn) vs Ultralytics predict.

Run: .venv/bin/python benchmarks/bench_classify.py [--n 50]. Prints medians (ms) and ratios.
No assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.intake.images import decode_image  # noqa: E402
from service.pipeline.backends import available_backends, card_path  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.cli_commands import make_screener  # noqa: E402
from tests.integration.conftest import start_server, stop_server  # noqa: E402


def median_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    """Median wall time of fn() in ms after 5 warm-up calls."""
    for _ in range(5):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    settings = Settings()
    val = settings.shared_dir / "data" / "skin6" / "val"
    paths = sorted(val.glob("*/*.jpg"))[:: max(1, len(sorted(val.glob('*/*.jpg'))) // 20)][:20]
    blobs = [p.read_bytes() for p in paths]
    print(f"images: {len(blobs)} skin6 val photos, n={args.n} per measurement")

    results: dict[str, float] = {}
    for backend in available_backends(settings):
        screener = make_screener(settings, backend)
        i = iter(range(10**9))

        def classify_once() -> None:
            blob = blobs[next(i) % len(blobs)]
            screener.screen(decode_image(blob).rgb)

        results[backend] = median_ms(classify_once, args.n)
        print(f"in-process decode+gate+classify [{backend}]: p50 {results[backend]:.2f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            with httpx.Client(base_url=server.url) as client:
                j = iter(range(10**9))

                def http_once() -> None:
                    blob = blobs[next(j) % len(blobs)]
                    r = client.post("/api/v1/classify", content=blob,
                                    headers={"content-type": "image/jpeg"})
                    r.raise_for_status()

                http = median_ms(http_once, args.n)
                backend = client.get("/ready").json()["classifier"]["backend"]
        finally:
            stop_server(server)
    print(f"HTTP loopback classify [{backend}]: p50 {http:.2f} ms; "
          f"ratio HTTP / in-process = {http / results[backend]:.2f}")

    try:
        from service.training.offline import prepare_offline_ultralytics

        with tempfile.TemporaryDirectory() as tmp:
            prepare_offline_ultralytics(Path(tmp))
            from ultralytics import YOLO

            model = YOLO(str(card_path(settings, "yolo").with_suffix(".pt")), task="classify")
            k = iter(range(10**9))

            def ultra_once() -> None:
                model.predict(str(paths[next(k) % len(paths)]), imgsz=224, verbose=False)

            ultra = median_ms(ultra_once, args.n)
        print(f"Ultralytics predict (torch, from file) [yolo]: p50 {ultra:.2f} ms; "
              f"ratio ONNX path / Ultralytics = {results['yolo'] / ultra:.2f}")
    except ImportError:
        print("Ultralytics not installed (train extra): skipped the predict comparison")


if __name__ == "__main__":
    main()
