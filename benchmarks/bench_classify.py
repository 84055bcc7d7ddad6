"""Classification latency: in-process ONNX vs HTTP (real uvicorn) vs Ultralytics predict.

Run: .venv/bin/python benchmarks/bench_classify.py [--n 50]. Prints medians (ms) and ratios.
No assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.images import decode_image, load_rgb  # noqa: E402
from service.logging import configure_logging  # noqa: E402
from service.pipeline.backends import available_backends, card_path, load_screener  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.support.live_server import start_server, stop_server  # noqa: E402

T = TypeVar("T")


def median_ms(fn: Callable[[T], object], items: Sequence[T], n: int) -> float:
    """Median wall time of fn(item) in ms over n calls cycling through items (5 warm-ups)."""
    cycle = itertools.cycle(items)
    for _ in range(5):
        fn(next(cycle))
    samples = []
    for _ in range(n):
        item = next(cycle)
        started = time.perf_counter()
        fn(item)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    settings = Settings()
    every = sorted((settings.shared_dir / "data" / "skin6" / "val").glob("*/*.jpg"))
    paths = every[:: max(1, len(every) // 20)][:20]
    blobs = [p.read_bytes() for p in paths]
    images = [load_rgb(p) for p in paths]
    print(f"images: {len(blobs)} skin6 val photos, n={args.n} per measurement, batch 1")

    in_process: dict[str, float] = {}
    decode_classify: dict[str, float] = {}
    for backend in available_backends(settings):
        screener = load_screener(settings, backend)
        classifier = screener.classifier
        model_only = median_ms(lambda im, c=classifier: c.probabilities([im]), images, args.n)
        decode_classify[backend] = median_ms(
            lambda b, c=classifier: c.probabilities([decode_image(b).rgb]), blobs, args.n
        )
        full = median_ms(lambda b, s=screener: s.screen(decode_image(b).rgb), blobs, args.n)
        in_process[backend] = full
        print(
            f"[{backend:8}] classify (preprocess + ONNX) p50 {model_only:6.2f} ms | "
            f"+ decode {decode_classify[backend]:6.2f} ms | "
            f"+ gate (what /classify does) {full:6.2f} ms"
        )

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            with httpx.Client(base_url=server.url) as client:
                backend = client.get("/ready").json()["classifier"]["backend"]

                def post(blob: bytes) -> None:
                    client.post(
                        "/api/v1/classify", content=blob, headers={"content-type": "image/jpeg"}
                    ).raise_for_status()

                http = median_ms(post, blobs, args.n)
        finally:
            stop_server(server)
    print(
        f"[{backend:8}] HTTP loopback classify p50 {http:6.2f} ms; "
        f"ratio HTTP / in-process = {http / in_process[backend]:.2f}"
    )

    try:
        from service.training.offline import prepare_offline_ultralytics

        with tempfile.TemporaryDirectory() as tmp:
            prepare_offline_ultralytics(Path(tmp))
            from ultralytics import YOLO

            model = YOLO(str(card_path(settings, "yolo").with_suffix(".pt")), task="classify")
            ultra = median_ms(
                lambda p: model.predict(str(p), imgsz=224, verbose=False), paths, args.n
            )
        print(
            f"[yolo    ] Ultralytics predict (torch, from file) p50 {ultra:6.2f} ms; "
            f"ratio ONNX path (decode + classify) / Ultralytics = "
            f"{decode_classify['yolo'] / ultra:.2f}"
        )
    except ImportError:
        print("Ultralytics not installed (train extra): skipped the predict comparison")


if __name__ == "__main__":
    main()
