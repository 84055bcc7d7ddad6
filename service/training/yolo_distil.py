"""Distil an EfficientNet teacher into YOLOv8-cls, with Ultralytics as the trainer.

The student trains on the usual Ultralytics classification pipeline (its augmentations, its
schedule); only the loss changes: `α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) +
(1 − α) · cross-entropy`, the teacher seeing the same augmented batch (ImageNet-normalised).
`DistilTrainer` hands Ultralytics a `ClassificationModel` whose criterion is that loss; the
teacher is never pickled into a checkpoint (`DistillationLoss.__getstate__`), and the shipped
`.pt` is stripped of the criterion so plain Ultralytics loads it.

For the photo-group CV (`distil_fold`), fold k's student learns from fold k's teacher (the
EfficientNet of `skinscreen train --cv` that never saw fold k) on the same training photos, and
predicts fold k: out-of-fold student predictions, comparable with the teacher's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class DistilRecipe:
    """The distillation knobs (the YOLO recipe itself is `yolo.YoloRecipe`)."""

    temperature: float = 2.0
    alpha: float = 0.7


class DistillationLoss:
    """Ultralytics classification criterion: soft targets from a frozen teacher + hard labels."""

    def __init__(self, teacher: nn.Module | None, recipe: DistilRecipe) -> None:
        self.teacher = teacher.eval() if teacher is not None else None
        self.recipe = recipe
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def __getstate__(self) -> dict[str, Any]:
        # checkpoints and EMA copies carry the recipe, never the teacher's weights
        return {**self.__dict__, "teacher": None}

    def __call__(
        self, preds: torch.Tensor | tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = preds[1] if isinstance(preds, (list, tuple)) else preds
        hard = F.cross_entropy(logits, batch["cls"], reduction="mean")
        if self.teacher is None:  # a copy made for validation or saving: plain cross-entropy
            return hard, {"loss": hard.detach()}
        t = self.recipe.temperature
        with torch.no_grad():
            images = (batch["img"].float() - self.mean) / self.std
            teacher = self.teacher(images)
        soft = F.kl_div(
            F.log_softmax(logits / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean"
        ) * (t * t)
        loss = self.recipe.alpha * soft + (1 - self.recipe.alpha) * hard
        return loss, {"loss": loss.detach()}


def distil_trainer(teacher: nn.Module, recipe: DistilRecipe) -> type:
    """An Ultralytics `ClassificationTrainer` subclass whose model learns from `teacher`."""
    from ultralytics.models.yolo.classify import ClassificationTrainer

    class DistilTrainer(ClassificationTrainer):  # type: ignore[misc]
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> Any:
            model = super().get_model(cfg, weights, verbose)
            model.criterion = DistillationLoss(teacher, recipe)
            return model

    return DistilTrainer


def strip_criterion(checkpoint: Path) -> None:
    """Rewrite an Ultralytics checkpoint without the distillation criterion (plain model)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        model = state.get(key)
        if model is not None and hasattr(model, "criterion"):
            model.criterion = None
    torch.save(state, checkpoint)
