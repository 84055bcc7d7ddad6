"""Occlusion-sensitivity heatmap (Zeiler & Fergus 2014) through any Classifier.

A grey square slides over a grid×grid lattice on the model's own centre-cropped view. Every
occluded copy goes through the classifier in one batch. The raw map holds, per patch
position, the drop in the explained class's probability. For display, the drops are spread
over pixels with Gaussian weights centred on each patch (separable, so it costs two matrix
products) and drawn as a colour overlay on the view the model actually saw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.pipeline.classifier import Classifier, EnsembleClassifier, OnnxClassifier
from service.pipeline.preprocess import center_crop, resize_shorter_edge

FloatMap = npt.NDArray[np.float64]
GREY = 128
DEFAULT_GRID = 6
PATCH_FRACTION = 0.25


@dataclass(frozen=True)
class Heatmap:
    """PNG overlay, the raw map and where it lives on the model's view.

    `map[r, c]` is the drop in the class probability when the patch whose top-left corner is
    `corners[r * grid + c]` (view pixels) is greyed out; negative values mean the patch hid
    evidence against the class.
    """

    png: bytes
    map: FloatMap
    class_index: int
    base_probability: float
    view_size: int
    patch: int
    corners: tuple[tuple[int, int], ...]


def view_size(classifier: Classifier) -> int:
    """Side of the square the model sees (largest member input for an ensemble)."""
    if isinstance(classifier, OnnxClassifier):
        return classifier.card.imgsz
    if isinstance(classifier, EnsembleClassifier):
        return max(view_size(member) for member in classifier.members)
    return 224


def model_view(image: Image.Image, side: int) -> Image.Image:
    """The square, centre-cropped view of `image` the classifier sees."""
    return center_crop(resize_shorter_edge(image.convert("RGB"), side), side)


def patch_offsets(side: int, grid: int, patch: int) -> list[int]:
    """Evenly spaced patch start offsets along one axis, first at 0 and last at side - patch."""
    stride = (side - patch) / max(1, grid - 1)
    return [round(i * stride) for i in range(grid)]


def occluded(view: Image.Image, corners: list[tuple[int, int]], patch: int) -> list[Image.Image]:
    """Copies of `view`, each with one grey patch."""
    base = np.asarray(view, dtype=np.uint8)
    images = []
    for x, y in corners:
        copy = base.copy()
        copy[y : y + patch, x : x + patch] = GREY
        images.append(Image.fromarray(copy))
    return images


def spread(drops: FloatMap, offsets: list[int], patch: int, side: int) -> FloatMap:
    """Per-pixel map: Gaussian-weighted mean of the patch drops (Nadaraya-Watson smoothing)."""
    centres = np.asarray(offsets, dtype=np.float64) + patch / 2
    pixels = np.arange(side, dtype=np.float64) + 0.5
    weights = np.exp(-0.5 * ((pixels[None, :] - centres[:, None]) / (patch / 2)) ** 2)
    numerator = weights.T @ drops @ weights
    denominator = weights.T @ np.ones_like(drops) @ weights
    result: FloatMap = numerator / denominator
    return result


def colourise(heat: FloatMap) -> npt.NDArray[np.uint8]:
    """A blue→cyan→yellow→red ramp for values in [0, 1]."""
    stops = np.array([[0, 0, 128], [0, 160, 255], [255, 230, 0], [220, 0, 0]], dtype=np.float64)
    position = np.clip(heat, 0, 1) * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    weight = (position - low)[..., None]
    rgb: npt.NDArray[np.uint8] = (stops[low] * (1 - weight) + stops[low + 1] * weight).astype(
        np.uint8
    )
    return rgb


def overlay_png(view: Image.Image, heat: FloatMap, out_side: int, alpha: float = 0.5) -> bytes:
    """PNG of the view with `heat` (per view pixel, in [0, 1]) drawn over it."""
    base = np.asarray(view.resize((out_side, out_side), Image.Resampling.BILINEAR), np.float64)
    field = Image.fromarray(heat.astype(np.float32), mode="F")
    scaled = np.asarray(field.resize((out_side, out_side), Image.Resampling.BILINEAR), np.float64)
    weight = alpha * np.clip(scaled, 0, 1)[..., None] ** 0.5
    blended = base * (1 - weight) + colourise(scaled) * weight
    buffer = io.BytesIO()
    Image.fromarray(blended.round().astype(np.uint8)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def explain(
    classifier: Classifier,
    image: Image.Image,
    class_index: int | None = None,
    grid: int = DEFAULT_GRID,
    out_side: int = 448,
) -> Heatmap:
    """Occlusion heatmap of `class_index` (default: the predicted class) for one RGB image."""
    side = view_size(classifier)
    view = model_view(image, side)
    patch = max(1, round(side * PATCH_FRACTION))
    offsets = patch_offsets(side, grid, patch)
    corners = [(x, y) for y in offsets for x in offsets]
    probs = classifier.probabilities([view, *occluded(view, corners, patch)])
    index = int(np.argmax(probs[0])) if class_index is None else class_index
    drops = (probs[0, index] - probs[1:, index]).reshape(grid, grid)
    per_pixel = spread(drops, offsets, patch, side)
    peak = float(per_pixel.max())
    heat = np.clip(per_pixel / peak, 0, 1) if peak > 0 else np.zeros_like(per_pixel)
    return Heatmap(
        png=overlay_png(view, heat, out_side),
        map=drops,
        class_index=index,
        base_probability=float(probs[0, index]),
        view_size=side,
        patch=patch,
        corners=tuple(corners),
    )
