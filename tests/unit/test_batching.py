"""Micro-batching: concurrent classifier passes share one session run, same answers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.images import load_rgb
from service.pipeline.backends import load_classifier
from service.pipeline.batching import SessionBatcher
from service.settings import Settings


def test_concurrent_passes_are_shared_and_equal_to_single_passes(
    skin6_val_images: dict[str, list[Path]],
) -> None:
    classifier = load_classifier(Settings(), "effnet")
    images = [load_rgb(p) for files in skin6_val_images.values() for p in files[:3]]
    expected = [classifier.forward([image]) for image in images]
    classifier.share_passes(8)
    batcher = classifier._batcher
    assert batcher is not None
    start = threading.Barrier(len(images))

    def call(index: int) -> object:
        start.wait()
        return classifier.forward([images[index]])

    with ThreadPoolExecutor(len(images)) as pool:
        got = list(pool.map(call, range(len(images))))
    assert batcher.rows == len(images) and batcher.passes < len(images)
    for (logits, features), (want_logits, want_features) in zip(got, expected, strict=True):  # type: ignore[misc]
        np.testing.assert_allclose(logits, want_logits, atol=1e-4)
        np.testing.assert_allclose(features, want_features, atol=1e-4)


def test_rows_go_back_to_their_callers() -> None:
    batcher = SessionBatcher(lambda rows: [rows * 2, rows.sum(axis=1)], max_rows=16)
    inputs = [np.full((n, 3), float(n), dtype=np.float32) for n in (1, 2, 3, 1)]
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(batcher.run, inputs))
    for rows, (doubled, sums) in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(doubled, rows * 2)
        np.testing.assert_array_equal(sums, rows.sum(axis=1))


def test_a_failing_pass_fails_its_callers_without_hanging() -> None:
    def explode(rows: object) -> list[object]:
        raise RuntimeError("model crashed")

    batcher = SessionBatcher(explode, max_rows=4)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="crashed"):
        batcher.run(np.zeros((1, 3), dtype=np.float32))
