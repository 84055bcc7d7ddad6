"""Occlusion heatmap: geometry of the map, PNG output, and that it follows the evidence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.images import load_rgb
from service.pipeline.backends import card_path, load_classifier
from service.pipeline.classifier import Classifier
from service.pipeline.domain import CLASSES
from service.pipeline.heatmap import (
    GREY,
    colourise,
    explain,
    model_view,
    patch_offsets,
    spread,
)
from service.settings import Settings


def test_patch_offsets_cover_the_view_edge_to_edge() -> None:
    assert patch_offsets(224, 6, 56) == [0, 34, 67, 101, 134, 168]
    assert patch_offsets(224, 1, 56) == [0]


def test_spread_puts_the_heat_under_the_occluded_patch() -> None:
    offsets = patch_offsets(224, 6, 56)
    drops = np.zeros((6, 6))
    drops[1, 4] = 0.8  # row 1, column 4
    per_pixel = spread(drops, offsets, 56, 224)
    y, x = np.unravel_index(int(np.argmax(per_pixel)), per_pixel.shape)
    assert offsets[1] <= y < offsets[1] + 56
    assert offsets[4] <= x < offsets[4] + 56
    assert per_pixel.shape == (224, 224)
    assert per_pixel.min() >= 0 and per_pixel.max() <= 0.8


def test_colourise_ramp_ends() -> None:
    ramp = colourise(np.array([[0.0, 1.0]]))
    assert ramp[0, 0].tolist() == [0, 0, 128]
    assert ramp[0, 1].tolist() == [220, 0, 0]


@pytest.fixture(scope="module")
def yolo(settings: Settings) -> Classifier:
    if not card_path(settings, "yolo").is_file():
        pytest.skip(f"no shipped yolo model in {settings.models_dir}")
    return load_classifier(settings, "yolo")


@pytest.fixture(scope="module")
def val_views(skin6_val_images: dict[str, list[Path]]) -> dict[str, list[Image.Image]]:
    return {
        c: [model_view(load_rgb(p), 224) for p in paths[:6]]
        for c, paths in skin6_val_images.items()
    }


def test_explain_returns_a_map_and_a_png(yolo: Classifier, skin_jpeg: bytes) -> None:
    image = Image.open(io.BytesIO(skin_jpeg)).convert("RGB")
    heatmap = explain(yolo, image)
    probs = yolo.probabilities([image])[0]
    assert heatmap.map.shape == (6, 6)
    assert heatmap.class_index == int(np.argmax(probs))
    assert heatmap.base_probability == pytest.approx(float(probs.max()), abs=1e-5)
    png = Image.open(io.BytesIO(heatmap.png))
    assert (png.format, png.size, png.mode) == ("PNG", (448, 448), "RGB")
    other = explain(yolo, image, class_index=(heatmap.class_index + 1) % len(CLASSES), grid=4)
    assert other.map.shape == (4, 4)
    assert other.class_index == (heatmap.class_index + 1) % len(CLASSES)


def test_the_hottest_patch_is_where_occlusion_hurts_most(
    yolo: Classifier, skin_jpeg: bytes
) -> None:
    view = model_view(Image.open(io.BytesIO(skin_jpeg)).convert("RGB"), 224)
    heatmap = explain(yolo, view)
    hot, cold = int(np.argmax(heatmap.map)), int(np.argmin(heatmap.map))
    assert heatmap.map.flat[hot] > heatmap.map.flat[cold]
    occluded = []
    for cell in (hot, cold):
        x, y = heatmap.corners[cell]
        pixels = np.asarray(view).copy()
        pixels[y : y + heatmap.patch, x : x + heatmap.patch] = GREY
        occluded.append(Image.fromarray(pixels))
    p_hot, p_cold = yolo.probabilities(occluded)[:, heatmap.class_index]
    assert heatmap.base_probability - p_hot == pytest.approx(heatmap.map.flat[hot], abs=1e-5)
    assert p_hot < p_cold


def test_heat_stays_on_the_only_visible_region(yolo: Classifier, skin_jpeg: bytes) -> None:
    """Grey everywhere but a window: patches over plain grey change nothing, so the heat
    must come from patches that touch the window."""
    view = np.asarray(model_view(Image.open(io.BytesIO(skin_jpeg)).convert("RGB"), 224))
    canvas = np.full_like(view, GREY)
    canvas[20:120, 110:210] = view[20:120, 110:210]
    heatmap = explain(yolo, Image.fromarray(canvas))
    for cell, (x, y) in enumerate(heatmap.corners):
        touches = x < 210 and x + heatmap.patch > 110 and y < 120 and y + heatmap.patch > 20
        if not touches:
            assert abs(heatmap.map.flat[cell]) < 1e-6
    assert np.abs(heatmap.map).max() > 1e-3


def test_heat_follows_the_half_that_shows_the_class(
    yolo: Classifier, val_views: dict[str, list[Image.Image]]
) -> None:
    """Left half from class A, right half from class B: explaining A must heat the left side
    relatively more than explaining B does, in most such pairs."""
    pairs = [(a, b) for a in CLASSES for b in CLASSES if a < b][:10]
    agree = 0
    for i, (a, b) in enumerate(pairs):
        left, right = np.asarray(val_views[a][i % 6]), np.asarray(val_views[b][i % 6])
        image = Image.fromarray(np.concatenate([left[:, :112], right[:, 112:]], axis=1))
        map_a = explain(yolo, image, CLASSES.index(a), grid=4).map
        map_b = explain(yolo, image, CLASSES.index(b), grid=4).map
        lean_a = map_a[:, :2].mean() - map_a[:, 2:].mean()
        lean_b = map_b[:, :2].mean() - map_b[:, 2:].mean()
        agree += lean_a > lean_b
    assert agree >= 7, f"only {agree}/10 composites heat the side that shows the class"
