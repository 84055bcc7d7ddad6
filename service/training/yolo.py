"""Train a YOLOv8-cls model from its YAML with Ultralytics, fully offline, then ship it.

Shipping = best.pt + ONNX export copied to `models/`, and a model card with val metrics computed
through the same onnxruntime path the service uses.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from service.training.offline import prepare_offline_ultralytics
from service.training.shipping import ship_model
from service.training.yolo_distil import DistilRecipe, distil_trainer, strip_criterion


@dataclass(frozen=True)
class YoloRecipe:
    """Every knob that shapes the trained model; recorded verbatim in the card."""

    arch: str = "yolov8n-cls"
    epochs: int = 60
    imgsz: int = 224
    batch: int = 32
    seed: int = 20261125
    patience: int = 20
    # AdamW wants a small step; 0.01 (SGD's usual value) left v1.0 underfitted at 0.56 top-1.
    lr0: float = 0.001
    optimizer: str = "AdamW"
    cos_lr: bool = True
    # Skin photos have no canonical orientation, so both flips are label-preserving.
    fliplr: float = 0.5
    flipud: float = 0.5
    # Hue carries diagnostic signal (redness, pigment): keep hue shifts tiny, S/V moderate.
    hsv_h: float = 0.005
    hsv_s: float = 0.3
    hsv_v: float = 0.3
    # RandomResizedCrop scale (1 - scale, 1): crops push watermarks in corners out of frame.
    scale: float = 0.5
    # Random erasing hides text overlays and eye bars so they cannot become shortcuts.
    erasing: float = 0.3
    auto_augment: str = "none"


def train_yolo(
    data: Path,
    out_dir: Path,
    name: str,
    recipe: YoloRecipe,
    work_dir: Path,
    version: str,
    teacher: Any = None,
    distil: DistilRecipe | None = None,
    keep: str = "best",
    evaluate_on_val: bool = True,
) -> dict[str, Any]:
    """Train, export to ONNX, evaluate on `data/val`, and write `out_dir/<name>.{pt,onnx,json}`.

    With a `teacher` (a torch classifier, or an `OnnxTeacher`, taking ImageNet-normalised
    images) the student is distilled from it (`yolo_distil`). `keep="last"` ships the last
    epoch instead of the one Ultralytics picked on `data/val` (for CV folds, where val is the
    held-out fold).
    """
    prepare_offline_ultralytics(work_dir / "ultralytics-config")
    from ultralytics import YOLO  # type: ignore[attr-defined]

    model = YOLO(f"{recipe.arch}.yaml", task="classify")
    # Ultralytics sets torch to cpu_count − 1 threads for CPU training (one, on 2 cores): half
    # the speed here. Given back at the end (the setting is process-wide).
    before, threads = torch.get_num_threads(), len(os.sched_getaffinity(0))
    model.add_callback("on_pretrain_routine_end", lambda _: torch.set_num_threads(threads))
    model.add_callback("on_train_end", lambda _: torch.set_num_threads(before))
    extra: dict[str, Any] = {}
    if teacher is not None:
        extra["trainer"] = distil_trainer(teacher, distil or DistilRecipe())
    model.train(
        **extra,
        data=str(data),
        epochs=recipe.epochs,
        imgsz=recipe.imgsz,
        batch=recipe.batch,
        seed=recipe.seed,
        deterministic=True,
        patience=recipe.patience,
        lr0=recipe.lr0,
        optimizer=recipe.optimizer,
        cos_lr=recipe.cos_lr,
        fliplr=recipe.fliplr,
        flipud=recipe.flipud,
        hsv_h=recipe.hsv_h,
        hsv_s=recipe.hsv_s,
        hsv_v=recipe.hsv_v,
        scale=recipe.scale,
        erasing=recipe.erasing,
        auto_augment=None if recipe.auto_augment == "none" else recipe.auto_augment,
        device="cpu",
        workers=0,
        pretrained=False,
        amp=False,
        # absolute: Ultralytics prefixes a relative project with runs/<task>/
        project=str((work_dir / "runs").resolve()),
        name=name,
        exist_ok=True,
        plots=True,
        verbose=True,
    )
    trainer: Any = model.trainer  # set by train(); where Ultralytics really saved the run
    best = Path(trainer.save_dir) / "weights" / f"{keep}.pt"
    if teacher is not None:
        strip_criterion(best)
    onnx_file = Path(
        YOLO(str(best), task="classify").export(format="onnx", imgsz=recipe.imgsz, dynamic=True)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out_dir / f"{name}.pt")
    shutil.copyfile(onnx_file, out_dir / f"{name}.onnx")
    import ultralytics

    return ship_model(
        data=data,
        out_dir=out_dir,
        name=name,
        version=version,
        architecture=recipe.arch,
        framework=f"ultralytics {ultralytics.__version__}",
        imgsz=recipe.imgsz,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        output="probabilities",
        recipe={
            **asdict(recipe),
            "weights": keep,
            **({"distillation": asdict(distil or DistilRecipe())} if teacher is not None else {}),
        },
        extra_files={"pt": f"{name}.pt"},
        evaluate_on_val=evaluate_on_val,
    )
