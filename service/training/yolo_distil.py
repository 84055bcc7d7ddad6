"""Distil an EfficientNet teacher into YOLOv8-cls, with Ultralytics as the trainer.

The student trains on the usual Ultralytics classification pipeline (its augmentations, its
schedule); only the loss changes: `α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) +
(1 − α) · cross-entropy`, the teacher seeing the same augmented batch (ImageNet-normalised).
`DistilTrainer` hands Ultralytics a `ClassificationModel` whose criterion is that loss; the
teacher is never pickled into a checkpoint (`DistillationLoss.__getstate__`), and the shipped
`.pt` is stripped of the criterion so plain Ultralytics loads it.

For the photo-group CV (`yolo_cv`), fold k's student learns from fold k's teacher (the
EfficientNet of `skinscreen train --cv` that never saw fold k) on the same training photos, and
predicts fold k: out-of-fold student predictions, comparable with the teacher's.

`OnnxTeacher` runs the teacher through onnxruntime instead of torch: on this CPU an
EfficientNet-Lite1 forward pass over a batch of 32 at 224 px takes 1.5 s in torch and 0.21 s in
onnxruntime (2 threads), which is most of a distillation step otherwise. It is exported from the
torch teacher and checked against it before training starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class DistilRecipe:
    """The distillation knobs (the YOLO recipe itself is `yolo.YoloRecipe`)."""

    temperature: float = 2.0
    alpha: float = 0.7


Teacher = Callable[[torch.Tensor], torch.Tensor]
#: The teacher's input normalisation (Ultralytics hands the loss images in [0, 1]).
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


class OnnxTeacher:
    """A torch teacher exported to ONNX (`path`) and called through onnxruntime.

    The export is checked against torch on random normalised images (raises `OnnxParityError`);
    the input size is fixed at `imgsz` (the student's training size). Not picklable by design:
    the loss drops it from checkpoints.
    """

    def __init__(self, model: nn.Module, path: Path, imgsz: int) -> None:
        import onnxruntime as ort

        from service.training.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, onnx_parity

        model.eval()
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, path, imgsz)
        probe = (torch.rand(2, 3, imgsz, imgsz) - MEAN) / STD
        onnx_parity(model, path, probe, tolerance=1e-3)
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))
        # torch trains the student in the same process: no spinning threads between batches
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input, self.output = INPUT_NAME, OUTPUT_NAME

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run([self.output], {self.input: batch})
        return torch.from_numpy(np.asarray(logits))


class DistillationLoss:
    """Ultralytics classification criterion: soft targets from a frozen teacher + hard labels."""

    def __init__(self, teacher: Teacher | None, recipe: DistilRecipe) -> None:
        if isinstance(teacher, nn.Module):
            teacher.eval()
        self.teacher = teacher
        self.recipe = recipe
        self.mean, self.std = MEAN, STD

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


def distil_trainer(teacher: Teacher, recipe: DistilRecipe) -> type:
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
