"""Photo-group CV of the distilled YOLO student, on the folds of the EfficientNet CV.

`python -m service.training.yolo_cv [--arch yolov8n-cls] [--epochs 60] [--no-distil]`

Fold k's student trains on the photos of the other folds (a symlinked Ultralytics folder set,
the held-out fold as its `val`, never used to pick weights: the last epoch is kept, and early
stopping is off) with fold k's EfficientNet (`build/cv/<teacher>/fold<k>.<tag>.pt`, which never
saw fold k) as its teacher, then predicts fold k through the same onnxruntime path the service
uses. Finished folds are skipped (resumable per fold). The OOF file
(`models/cv/<student>.oof.npz`, log-probabilities as `last_logits`) is judged like the
teacher's: cross-fitted temperature, macro-F1 with photo-group intervals, and the gap to the
teacher's OOF macro-F1 (target ≤ 0.03).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.evaluation.cv_metrics import Oof, cross_fitted_temperature, figures
from service.images import load_rgb
from service.pipeline.classifier import OnnxClassifier
from service.pipeline.domain import CLASSES
from service.settings import Settings
from service.training.cv import all_photos, chosen_tag, file_id
from service.training.cv_fold import saved_model
from service.training.yolo import YoloRecipe, train_yolo
from service.training.yolo_distil import DistilRecipe


def fold_folder(
    data: Path, files: Sequence[str], folds: np.ndarray[Any, Any], fold: int, root: Path
) -> Path:
    """`root/train/<Class>/…` (other folds) and `root/val/<Class>/…` (fold k) as symlinks."""
    for file, f in zip(files, folds, strict=True):
        split = "val" if int(f) == fold else "train"
        cls, name = Path(file).parent.name, Path(file).name
        link = root / split / cls / name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink((data / file).resolve(), link)
    return root


def teacher_model(teacher_dir: Path, fold: int | None, tag: str) -> torch.nn.Module:
    """A fold's (or the final) EfficientNet of the teacher CV, built for that run's recipe."""
    return saved_model(teacher_dir, "final" if fold is None else f"fold{fold}", tag, len(CLASSES))


def run_yolo_cv(
    data: Path,
    teacher_dir: Path,
    work_dir: Path,
    out: Path,
    recipe: YoloRecipe,
    distil: DistilRecipe | None,
    tag: str,
) -> Path:
    plan = json.loads((teacher_dir / "plan.json").read_text())
    files, folds = plan["files"], np.asarray(plan["folds"], dtype=np.int64)
    items = all_photos(data)
    if [file_id(i, data) for i in items] != files:
        raise SystemExit("the teacher's CV plan names other photos")
    recipe = replace(recipe, patience=recipe.epochs)  # no early stopping on the held-out fold
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_doc = {
        "teacher_plan_sha256": hashlib.sha256((teacher_dir / "plan.json").read_bytes()).hexdigest(),
        "recipe": asdict(recipe),
        "distillation": asdict(distil) if distil else None,
        "tag": tag,
    }
    own_plan = work_dir / "plan.json"
    if own_plan.is_file() and json.loads(own_plan.read_text()) != plan_doc:
        raise SystemExit(f"{own_plan} was written for another teacher CV or recipe: new work dir")
    own_plan.write_text(json.dumps(plan_doc))
    for fold in range(int(folds.max()) + 1):
        result = work_dir / f"fold{fold}.npz"
        if result.is_file():
            continue
        folder = fold_folder(data, files, folds, fold, work_dir / f"fold{fold}-data")
        teacher = teacher_model(teacher_dir, fold, tag) if distil else None
        card = train_yolo(
            folder,
            work_dir / f"fold{fold}-model",
            f"fold{fold}",
            recipe,
            work_dir / f"fold{fold}-work",
            version="cv",
            teacher=teacher,
            distil=distil,
            keep="last",
            evaluate_on_val=False,
        )
        classifier = OnnxClassifier.from_card_path(
            work_dir / f"fold{fold}-model" / f"{card['name']}.json"
        )
        held = np.flatnonzero(folds == fold)
        logits = np.concatenate(
            [
                classifier.logits([load_rgb(items[i].path) for i in held[s : s + 32]])
                for s in range(0, held.size, 32)
            ]
        )
        np.savez(result, held_index=held, logits=logits.astype(np.float32))
    logits = np.zeros((len(items), len(CLASSES)), dtype=np.float32)
    for fold in range(int(folds.max()) + 1):
        with np.load(work_dir / f"fold{fold}.npz") as part:
            if not np.array_equal(part["held_index"], np.flatnonzero(folds == fold)):
                raise SystemExit(f"fold{fold}.npz holds other photos than fold {fold}")
            logits[part["held_index"]] = part["logits"]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        files=np.asarray(files),
        labels=np.asarray([i.label for i in items], dtype=np.int64),
        groups=np.asarray([i.group for i in items]),
        folds=folds,
        last_logits=logits,
    )
    return out


def judge(oof_path: Path, teacher_report: Path | None) -> dict[str, Any]:
    with np.load(oof_path) as oof:
        view = Oof(
            oof["last_logits"].astype(np.float64),
            oof["labels"].astype(np.int64),
            [str(g) for g in oof["groups"]],
            oof["folds"].astype(np.int64),
        )
    probs, temperatures = cross_fitted_temperature(view)
    result = figures(probs, view, CLASSES)
    result["fold_temperatures"] = temperatures
    if teacher_report is not None and teacher_report.is_file():
        teacher = json.loads(teacher_report.read_text())
        teacher_f1 = teacher["variants"][teacher["chosen"]]["macro_f1"]
        result["teacher_macro_f1"] = teacher_f1
        result["gap_to_teacher"] = round(teacher_f1 - result["macro_f1"], 4)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--arch", default="yolov8n-cls")
    parser.add_argument("--epochs", type=int, default=YoloRecipe.epochs)
    parser.add_argument("--imgsz", type=int, default=YoloRecipe.imgsz)
    parser.add_argument("--teacher", default=None, help="default: the served effnet model")
    parser.add_argument("--tag", default=None, choices=("last", "ema"), help="default: chosen")
    parser.add_argument("--no-distil", action="store_true")
    parser.add_argument("--temperature", type=float, default=DistilRecipe.temperature)
    parser.add_argument("--alpha", type=float, default=DistilRecipe.alpha)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    args.teacher = args.teacher or Settings().effnet_model
    args.tag = args.tag or chosen_tag(args.models_dir / "cv" / f"{args.teacher}.cv.json")
    teacher_dir = Path("build/cv") / args.teacher
    kind = "plain" if args.no_distil else "distilled"
    name = f"skinscreen-{args.arch}-{kind}"
    recipe = YoloRecipe(arch=args.arch, epochs=args.epochs, imgsz=args.imgsz)
    distil = None if args.no_distil else DistilRecipe(args.temperature, args.alpha)
    out = args.models_dir / "cv" / f"{name}.oof.npz"
    run_yolo_cv(
        args.data,
        teacher_dir,
        Path("build/cv") / name,
        out,
        recipe,
        distil,
        args.tag,
    )
    report = {
        "recipe": asdict(recipe),
        "distillation": asdict(distil) if distil else None,
        "teacher": f"{args.teacher} ({args.tag})",
        **judge(out, args.models_dir / "cv" / f"{args.teacher}.cv.json"),
    }
    (args.models_dir / "cv" / f"{name}.cv.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("macro_f1", "macro_f1_ci95", "ece_15")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
