"""The watermark / eye-bar shortcut check: how much does the classifier lean on them?

Many skin6 photos carry a publisher's watermark ("©DermNet", "…net.com") in a band along the top
or bottom edge, and some carry black bars over the eyes or black borders. A model may learn
those instead of the skin. Three masked copies of each photo are classified:

- `top_bottom_bands`: the top 12 % and bottom 15 % rows filled with the photo's median colour
  (where the watermarks sit);
- `side_bands` (control): the same area taken from the left and right edges instead — it
  removes as much of the photo, away from the watermarks;
- `black_bars`: near-black pixels (eye bars, borders) filled with the median colour.

A drop under `top_bottom_bands` well beyond the control's means the watermark band carries
class signal the model uses. Drops are paired per photo (same photos, same model) with
photo-group bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.evaluation.cv_metrics import group_bootstrap, macro_f1

TOP, BOTTOM = 0.12, 0.15
BLACK = 16  # all channels below: an eye bar or a border


def _median_colour(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    result: npt.NDArray[np.uint8] = np.median(pixels.reshape(-1, 3), axis=0).astype(np.uint8)
    return result


def top_bottom_bands(image: Image.Image) -> Image.Image:
    a = np.asarray(image.convert("RGB")).copy()
    h = a.shape[0]
    fill = _median_colour(a)
    a[: round(TOP * h)] = fill
    a[h - round(BOTTOM * h) :] = fill
    return Image.fromarray(a)


def side_bands(image: Image.Image) -> Image.Image:
    a = np.asarray(image.convert("RGB")).copy()
    w = a.shape[1]
    fill = _median_colour(a)
    a[:, : round(TOP * w)] = fill
    a[:, w - round(BOTTOM * w) :] = fill
    return Image.fromarray(a)


def black_bars(image: Image.Image) -> Image.Image:
    a = np.asarray(image.convert("RGB")).copy()
    dark = (a < BLACK).all(axis=2)
    if dark.any() and not dark.all():
        a[dark] = _median_colour(a[~dark])
    return Image.fromarray(a)


MASKS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "top_bottom_bands": top_bottom_bands,
    "side_bands": side_bands,
    "black_bars": black_bars,
}


def _paired_drop(
    labels: npt.NDArray[np.int64],
    base: npt.NDArray[np.int64],
    masked: npt.NDArray[np.int64],
    n_classes: int,
) -> Callable[[npt.NDArray[np.int64]], float]:
    return lambda i: (
        macro_f1(labels[i], base[i], n_classes) - macro_f1(labels[i], masked[i], n_classes)
    )


def shortcut_check(
    predict: Callable[[list[Image.Image]], npt.NDArray[np.int64]],
    images: Sequence[Image.Image],
    labels: npt.NDArray[np.int64],
    groups: Sequence[str],
    n_classes: int,
) -> dict[str, Any]:
    """Macro-F1 and top-1 of `predict` on the photos and on each masked copy, with the drops."""
    base = predict(list(images))
    result: dict[str, Any] = {
        "photos": len(images),
        "with_black_pixels": int(
            sum(bool((np.asarray(i.convert("RGB")) < BLACK).all(axis=2).any()) for i in images)
        ),
        "original": {
            "macro_f1": round(macro_f1(labels, base, n_classes), 4),
            "top1": round(float(np.mean(base == labels)), 4),
        },
    }
    for name, mask in MASKS.items():
        pred = predict([mask(i) for i in images])
        result[name] = {
            "macro_f1": round(macro_f1(labels, pred, n_classes), 4),
            "top1": round(float(np.mean(pred == labels)), 4),
            "macro_f1_drop_ci95": group_bootstrap(
                groups, _paired_drop(labels, base, pred, n_classes), draws=500
            ),
            "changed_predictions": int(np.sum(pred != base)),
        }
        result[name]["macro_f1_drop"] = round(
            result["original"]["macro_f1"] - result[name]["macro_f1"], 4
        )
    return result
