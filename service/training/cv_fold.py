"""One fold of the photo-group cross-validation of the EfficientNet recipe.

The fold's model trains on the other folds for the recipe's fixed number of epochs (no early
stopping: nothing is chosen on the held-out photos), keeping an exponential moving average (EMA)
of its weights beside it. Every epoch ends with a checkpoint, so a killed run resumes where it
stopped. At the end, for the last weights and for the EMA, it keeps what the service would see on
the held-out photos (logits, flipped-image logits, pooled features) and the pooled features of
its own training photos (class means for the feature-space gate), in `fold<k>.npz`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from service.evaluation.dataset import LabelledImage
from service.evaluation.metrics import classification_metrics
from service.training.effnet_data import cache_eval_images, cache_train_images
from service.training.effnet_fit import EpochTrainer, seed_everything
from service.training.effnet_model import EffnetRecipe, build_model
from service.training.onnx_export import LogitsAndFeatures

#: Weight tags kept per fold: the plain last epoch and the EMA of the weights.
TAGS = ("last", "ema")


@torch.no_grad()
def logits_and_features(
    model: nn.Module, images: torch.Tensor, batch: int = 64
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Eval-mode (logits, pooled features) for preprocessed images, as float32 arrays."""
    graph = LogitsAndFeatures(model.eval()).eval()
    logits, features = [], []
    for i in range(0, len(images), batch):
        out = graph(images[i : i + batch].contiguous(memory_format=torch.channels_last))
        logits.append(out[0].numpy())
        features.append(out[1].numpy())
    return np.concatenate(logits).astype(np.float32), np.concatenate(features).astype(np.float32)


def plan_recipe(work_dir: Path) -> EffnetRecipe:
    """The recipe a CV run's `plan.json` was written for (architecture, sizes, ...)."""
    return EffnetRecipe(**json.loads((work_dir / "plan.json").read_text())["recipe"])


def saved_model(work_dir: Path, stem: str, tag: str, num_classes: int) -> nn.Module:
    """`<stem>.<tag>.pt` of a CV run (a fold's or the final model), in eval mode, built for the
    run's recipe."""
    return weights_for_run(work_dir, work_dir / f"{stem}.{tag}.pt", num_classes)


def weights_for_run(work_dir: Path, weights: Path, num_classes: int) -> nn.Module:
    """The state dict `weights` loaded into a model built for the CV run's recipe, eval mode."""
    model = build_model(num_classes, plan_recipe(work_dir))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _save_atomic(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def train_fixed_schedule(
    train: tuple[list[torch.Tensor], torch.Tensor],
    recipe: EffnetRecipe,
    classes: Sequence[str],
    ema_decay: float,
    checkpoint: Path,
    seed: int,
    name: str,
    monitor: Callable[[nn.Module, int], dict[str, Any]] | None = None,
    progress: Callable[[str], None] = print,
) -> tuple[nn.Module, nn.Module, list[dict[str, Any]]]:
    """All `recipe.epochs` epochs (nothing selected), resuming from `checkpoint`; returns the
    last weights, their EMA and the log. `monitor(model, epoch)` adds figures to an epoch's
    entry."""
    generator = seed_everything(seed, recipe.threads)
    model = build_model(len(classes), recipe).to(memory_format=torch.channels_last)
    trainer = EpochTrainer(model, recipe, len(train[0]))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    trainer.after_step = lambda: ema.update_parameters(model)
    log: list[dict[str, Any]] = []
    start = 1
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        trainer.load_state_dict(state["trainer"])
        ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        log, start = state["log"], state["epoch"] + 1
        progress(f"{name}: resumed after epoch {state['epoch']}")
    for epoch in range(start, recipe.epochs + 1):
        started = time.perf_counter()
        lr = trainer.lr
        desc = f"{name} epoch {epoch}/{recipe.epochs}"
        loss = trainer.epoch(train, generator, desc)
        entry: dict[str, Any] = {"epoch": epoch, "lr_start": round(lr, 7), "loss": round(loss, 4)}
        if monitor is not None:
            entry.update(monitor(model, epoch))
            model.train()
        entry["seconds"] = round(time.perf_counter() - started, 1)
        log.append(entry)
        progress(f"{desc}: {entry}")
        snapshot = {
            "trainer": trainer.state_dict(),
            "ema": ema.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "log": log,
            "epoch": epoch,
        }
        _save_atomic(checkpoint, lambda p, s=snapshot: torch.save(s, p))  # type: ignore[misc]
    return model, ema.module, log


def train_fold(
    items: Sequence[LabelledImage],
    folds: npt.NDArray[np.int64],
    fold: int,
    recipe: EffnetRecipe,
    work_dir: Path,
    classes: Sequence[str],
    ema_decay: float,
    monitor_from: int,
    progress: Callable[[str], None] = print,
) -> Path:
    """Train fold `fold` (resuming from its checkpoint) and write `fold<k>.npz`; its path."""
    result = work_dir / f"fold{fold}.npz"
    if result.is_file():
        return result
    checkpoint = work_dir / f"fold{fold}.checkpoint.pt"
    train_idx = [int(i) for i in np.flatnonzero(folds != fold)]
    held_idx = [int(i) for i in np.flatnonzero(folds == fold)]
    train_images = cache_train_images([items[i].path for i in train_idx], recipe.cache_edge)
    train_labels = torch.tensor([items[i].label for i in train_idx], dtype=torch.long)
    held_images = cache_eval_images([items[i].path for i in held_idx], recipe.imgsz)
    held_labels = np.asarray([items[i].label for i in held_idx], dtype=np.int64)

    def monitor(model: nn.Module, epoch: int) -> dict[str, Any]:
        """Held-out figures of the last epochs: the CV learning curve, never used to select."""
        if epoch < monitor_from:
            return {}
        logits, _ = logits_and_features(model, held_images)
        metrics = classification_metrics(_softmax(logits), held_labels, classes)
        return {"held_top1": metrics["top1"], "held_macro_f1": metrics["macro_f1"]}

    model, ema_model, log = train_fixed_schedule(
        (train_images, train_labels),
        recipe,
        classes,
        ema_decay,
        checkpoint,
        recipe.seed + fold,
        f"fold {fold}",
        monitor,
        progress,
    )
    arrays: dict[str, npt.NDArray[Any]] = {
        "held_index": np.asarray(held_idx, dtype=np.int64),
        "train_index": np.asarray(train_idx, dtype=np.int64),
    }
    train_eval = cache_eval_images([items[i].path for i in train_idx], recipe.imgsz)
    for tag, net in (("last", model), ("ema", ema_model)):
        logits, features = logits_and_features(net, held_images)
        flipped, _ = logits_and_features(net, held_images.flip(-1))
        arrays[f"{tag}_logits"], arrays[f"{tag}_features"] = logits, features
        arrays[f"{tag}_flip_logits"] = flipped
        arrays[f"{tag}_train_features"] = logits_and_features(net, train_eval)[1]
        metrics = classification_metrics(_softmax(logits), held_labels, classes)
        progress(f"fold {fold} {tag}: held-out macro-F1 {metrics['macro_f1']:.4f}")
    torch.save(model.state_dict(), work_dir / f"fold{fold}.last.pt")
    torch.save(ema_model.state_dict(), work_dir / f"fold{fold}.ema.pt")
    (work_dir / f"fold{fold}.log.json").write_text(json.dumps(log, indent=1))
    _save_atomic(result, lambda p: _write_npz(p, arrays))
    checkpoint.unlink(missing_ok=True)
    return result


def _write_npz(path: Path, arrays: dict[str, npt.NDArray[Any]]) -> None:
    with path.open("wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    result: npt.NDArray[np.float64] = z / z.sum(axis=1, keepdims=True)
    return result
