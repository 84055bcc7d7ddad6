"""The watermark / eye-bar masks of the shortcut check, and the paired figures."""

from __future__ import annotations

import numpy as np
from PIL import Image

from service.evaluation.watermark import (
    black_bars,
    shortcut_check,
    side_bands,
    top_bottom_bands,
)


def photo() -> Image.Image:
    a = np.full((100, 80, 3), (200, 150, 130), dtype=np.uint8)
    a[40:50, 10:70] = 0  # an eye bar
    a[95:, :] = 255  # a white watermark band at the bottom
    return Image.fromarray(a)


def test_masks_hide_the_bands_and_the_bars_only() -> None:
    bands = np.asarray(top_bottom_bands(photo()))
    assert (bands[95:] == bands[50, 40]).all() and (bands[:12] == bands[50, 40]).all()
    assert (bands[40:50, 10:70] == 0).all()  # the bar is not a band
    sides = np.asarray(side_bands(photo()))
    assert (sides[:, :10] == sides[60, 40]).all() and (sides[95:, 40] == 255).all()
    bars = np.asarray(black_bars(photo()))
    assert not (bars < 16).all(axis=2).any()
    assert (bars[45, 30] == (200, 150, 130)).all()
    flat = Image.new("RGB", (20, 20), (0, 0, 0))
    assert np.asarray(black_bars(flat)).max() == 0  # an all-black image stays as it is


def test_a_model_reading_the_band_shows_a_drop_the_control_does_not() -> None:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(40):
        a = rng.integers(100, 200, (60, 60, 3)).astype(np.uint8)
        label = i % 2
        a[-6:] = 255 if label else 0  # the class is written in the bottom band
        images.append(Image.fromarray(a))
        labels.append(label)

    def predict(batch: list[Image.Image]) -> np.ndarray:
        return np.asarray([int(np.asarray(im)[-1].mean() > 128) for im in batch], dtype=np.int64)

    result = shortcut_check(predict, images, np.asarray(labels), [str(i) for i in range(40)], 2)
    assert result["original"]["macro_f1"] == 1.0
    assert result["top_bottom_bands"]["macro_f1_drop"] > 0.4
    assert result["side_bands"]["macro_f1_drop"] == 0.0
    low, high = result["top_bottom_bands"]["macro_f1_drop_ci95"]
    assert 0 < low <= high
