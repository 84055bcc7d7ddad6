"""Gate overhead and occlusion-heatmap latency per shipped backend.

Run: .venv/bin/python benchmarks/bench_gate_heatmap.py [--n 20]. Prints medians in ms.
No assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.images import load_rgb  # noqa: E402
from service.pipeline.backends import available_backends, load_classifier  # noqa: E402
from service.pipeline.gate_config import GateConfig  # noqa: E402
from service.pipeline.heatmap import explain  # noqa: E402
from service.pipeline.quality import measure  # noqa: E402
from service.pipeline.screening import Screener  # noqa: E402
from service.settings import Settings  # noqa: E402


def median_ms(fn: Callable[[], object], n: int) -> float:
    """Median wall time of fn() in ms after 2 warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--grids", type=int, nargs="*", default=[4, 5, 6, 7])
    args = parser.parse_args()
    settings = Settings()
    val = settings.shared_dir / "data" / "skin6" / "val" / "Acne"
    image = load_rgb(sorted(val.glob("*.jpg"))[0])
    big = image.resize((4000, 2625))
    print(f"gate checks only: {median_ms(lambda: measure(image), args.n):.1f} ms (320 px), "
          f"{median_ms(lambda: measure(big), args.n):.1f} ms (4000 px)")  # fmt: skip
    config = GateConfig.load(settings.models_dir)
    for backend in available_backends(settings):
        classifier = load_classifier(settings, backend)
        screener = Screener(classifier, config, 0.5, 0.1)
        plain = median_ms(lambda c=classifier: c.probabilities([image]), args.n)
        gated = median_ms(lambda s=screener: s.screen(image), args.n)
        print(f"{backend}: classify {plain:.1f} ms, screen (gate + classify) {gated:.1f} ms")
        for grid in args.grids:
            ms = median_ms(
                lambda c=classifier, g=grid: explain(c, image, grid=g), max(5, args.n // 4)
            )
            print(f"{backend}: explain grid {grid} ({grid * grid + 1} images) {ms:.0f} ms")


if __name__ == "__main__":
    main()
