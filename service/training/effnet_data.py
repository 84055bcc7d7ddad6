"""Training inputs for the EfficientNet fine-tune: decode-once image caches and augmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2
from tqdm import tqdm

from service.images import load_rgb
from service.pipeline.preprocess import classify_tensor, resize_shorter_edge
from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD, EffnetRecipe


def cache_train_images(paths: Sequence[Path], edge: int) -> list[torch.Tensor]:
    """Decode each image once: uint8 CHW tensors with the shorter edge resized to `edge`."""
    cached = []
    for path in tqdm(paths, desc="caching train images", unit="img"):
        array = np.asarray(resize_shorter_edge(load_rgb(path), edge), dtype=np.uint8)
        cached.append(torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous())
    return cached


def cache_eval_images(paths: Sequence[Path], imgsz: int) -> torch.Tensor:
    """The exact `OnnxClassifier` inference transform, stacked: (N, 3, imgsz, imgsz) float32."""
    tensors = [
        classify_tensor(load_rgb(p), imgsz, IMAGENET_MEAN, IMAGENET_STD)
        for p in tqdm(paths, desc="caching val images", unit="img")
    ]
    return torch.from_numpy(np.stack(tensors))


def train_transform(recipe: EffnetRecipe) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 CHW tensor → augmented, normalised float CHW tensor."""
    transform: Callable[[torch.Tensor], torch.Tensor] = v2.Compose(
        [
            v2.RandomRotation(recipe.rotation_deg),
            v2.RandomResizedCrop(
                recipe.train_imgsz, scale=(recipe.crop_scale_min, 1.0), antialias=True
            ),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.ColorJitter(recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.RandomErasing(p=recipe.erasing, scale=(0.02, 0.15), value=0),
        ]
    )
    return transform
