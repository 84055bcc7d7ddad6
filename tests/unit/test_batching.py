"""Micro-batching: concurrent classifications share passes and get the same answers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.images import load_rgb
from service.pipeline.backends import load_screener
from service.pipeline.batching import BatchingScreener
from service.settings import Settings


class Exploding:
    def screen(self, image: object) -> object:
        raise AssertionError("unused")

    def screen_batch(self, images: object) -> object:
        raise RuntimeError("model crashed")


def test_concurrent_calls_are_batched_and_equal_to_single_calls(
    skin6_val_images: dict[str, list[Path]],
) -> None:
    screener = load_screener(Settings(), "effnet")
    paths = [p for files in skin6_val_images.values() for p in files[:3]]
    images = [load_rgb(p) for p in paths]
    expected = [screener.screen(image) for image in images]
    batching = BatchingScreener(screener, max_batch=8)
    start = threading.Barrier(len(images))

    def call(index: int) -> object:
        start.wait()
        return batching.screen(images[index])

    with ThreadPoolExecutor(len(images)) as pool:
        got = list(pool.map(call, range(len(images))))
    assert batching.images == len(images) and batching.batches < len(images)
    for (gate, classification), (want_gate, want) in zip(got, expected, strict=True):  # type: ignore[misc]
        assert gate.status == want_gate.status and gate.reasons == want_gate.reasons
        assert classification.label == want.label
        for label, p in want.probabilities.items():
            assert classification.probabilities[label] == pytest.approx(p, abs=1e-4)


def test_a_failing_pass_fails_its_callers_without_hanging() -> None:
    from PIL import Image

    batching = BatchingScreener(Exploding(), max_batch=4)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="crashed"):
        batching.screen(Image.new("RGB", (32, 32)))
