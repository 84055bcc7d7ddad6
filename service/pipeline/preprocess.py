"""Image → model tensor, identical to Ultralytics' `classify_transforms` at inference.

Ultralytics: torchvision Resize(shorter edge = size, bilinear on PIL) → CenterCrop(size) →
ToTensor (/255) → Normalize(mean 0, std 1). torchvision computes the long edge as
`int(size * long / short)` and the crop offsets as `int(round((h - size) / 2))`; both are
reproduced here exactly so that probabilities match `YOLO(...).predict` to 1e-4.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

Tensor = npt.NDArray[np.float32]


def resize_shorter_edge(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter edge is `size` (torchvision's rounding), bilinear with antialias."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return image
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    return image.resize((new_w, new_h), Image.Resampling.BILINEAR)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Centre crop to size×size with torchvision's offsets (pads with black if too small)."""
    width, height = image.size
    if width < size or height < size:
        padded = Image.new("RGB", (max(width, size), max(height, size)))
        padded.paste(image, ((padded.width - width) // 2, (padded.height - height) // 2))
        image, (width, height) = padded, padded.size
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def to_chw_tensor(
    image: Image.Image,
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Tensor:
    """HWC uint8 RGB → CHW float32 in [0, 1], then per-channel normalisation."""
    scaled = np.asarray(image.convert("RGB"), dtype=np.float32) * np.float32(1.0 / 255.0)
    offset = np.asarray(mean, dtype=np.float32)
    scale = np.asarray(std, dtype=np.float32)
    normalised: Tensor = np.subtract(scaled, offset, dtype=np.float32) / scale
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def classify_tensor(
    image: Image.Image,
    size: int,
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Tensor:
    """The full inference transform for one RGB image: (3, size, size) float32."""
    return to_chw_tensor(center_crop(resize_shorter_edge(image, size), size), mean, std)
