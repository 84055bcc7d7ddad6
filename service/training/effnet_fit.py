"""The EfficientNet fine-tuning loop: seeding, epochs, val evaluation and early stopping."""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from service.evaluation.metrics import classification_metrics
from service.training.effnet_data import train_transform
from service.training.effnet_model import EffnetRecipe, freeze


def seed_everything(seed: int, threads: int) -> torch.Generator:
    """Seed python, numpy and torch; deterministic kernels; returns the shuffling generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


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


class EpochTrainer:
    """AdamW + one-cycle over a fixed number of epochs: the optimiser, schedule and loss of one
    fine-tune, one epoch at a time (`state_dict` / `load_state_dict` make it resumable)."""

    def __init__(self, model: nn.Module, recipe: EffnetRecipe, train_size: int) -> None:
        self.model, self.recipe = model, recipe
        self.frozen = freeze(model, recipe.freeze_blocks)
        steps_per_epoch = len(_batches(list(range(train_size)), recipe.batch))
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            trainable, lr=recipe.lr, weight_decay=recipe.weight_decay
        )
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=recipe.lr,
            total_steps=recipe.epochs * steps_per_epoch,
            pct_start=recipe.warmup_pct,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.augment = train_transform(recipe)
        self.after_step: Callable[[], None] = lambda: None

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.criterion(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.after_step()
        return float(loss.item())

    def epoch(
        self,
        train: tuple[Sequence[torch.Tensor], torch.Tensor],
        generator: torch.Generator,
        desc: str,
    ) -> float:
        """One pass over `train`; the mean training loss."""
        images, labels = train
        return _train_epoch(
            self.model,
            self.frozen,
            images,
            labels,
            self.augment,
            self.step,
            self.recipe.batch,
            generator,
            desc,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])


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
    trainer = EpochTrainer(model, recipe, len(train[0]))
    log: list[dict[str, Any]] = []
    best_f1, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    stop_reason = "planned epochs done"
    training_started = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        lr = trainer.lr
        desc = f"epoch {epoch}/{recipe.epochs}"
        loss = trainer.epoch(train, generator, desc)
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
