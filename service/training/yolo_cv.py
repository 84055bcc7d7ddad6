"""Photo-group CV of the distilled YOLO student, on the folds of the EfficientNet CV.

`python -m service.training.yolo_cv [--arch yolov8n-cls] [--epochs 60] [--no-distil]`

Fold k's student trains on the photos of the other folds (a symlinked Ultralytics folder set,
the held-out fold as its `val`, never used to pick weights: the last epoch is kept, and early
stopping is off) with fold k's EfficientNet (`build/cv/<teacher>/fold<k>.<tag>.pt`, which never
saw fold k) as its teacher, then predicts fold k through the same onnxruntime path the service
uses. Finished folds are skipped (resumable per fold). The OOF file
(`models/cv/<student>.oof.npz`: log-probabilities as `last_logits`, and the teacher's OOF gate
distances — the served YOLO measures with the EfficientNet's features) is judged by `cv_fit`
like the teacher's — cross-fitted temperature, macro-F1 with photo-group intervals, conformal
sets, gate and malignancy threshold — and the report adds the gap to the teacher's OOF
macro-F1 (target ≤ 0.03). `yolo_final` ships a student trained on every photo with it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.images import load_rgb
from service.pipeline.classifier import OnnxClassifier
from service.pipeline.domain import CLASSES
from service.settings import Settings
from service.training.cv import all_photos, chosen_tag, file_id
from service.training.cv_fit import borrowed_gate, fit_all, read_oof
from service.training.cv_fold import saved_model
from service.training.cv_gate import GatePercentiles
from service.training.oof_entries import energy_bars
from service.training.yolo import YoloRecipe, train_yolo
from service.training.yolo_distil import DistilRecipe, OnnxTeacher


def link_photos(data: Path, placements: Iterable[tuple[str, str]], root: Path) -> Path:
    """An Ultralytics folder set of symlinks: `root/<split>/<Class>/<photo>` for each
    (split, photo file id) in `placements` (a photo may sit in two splits)."""
    for split, file in placements:
        link = root / split / Path(file).parent.name / Path(file).name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink((data / file).resolve(), link)
    return root


def fold_folder(
    data: Path, files: Sequence[str], folds: np.ndarray[Any, Any], fold: int, root: Path
) -> Path:
    """`root/train/<Class>/…` (other folds) and `root/val/<Class>/…` (fold k) as symlinks."""
    placements = (
        ("val" if int(f) == fold else "train", file) for file, f in zip(files, folds, strict=True)
    )
    return link_photos(data, placements, root)


def teacher_model(teacher_dir: Path, fold: int, tag: str) -> torch.nn.Module:
    """A fold's EfficientNet of the teacher CV, built for that run's recipe."""
    return saved_model(teacher_dir, f"fold{fold}", tag, len(CLASSES))


def run_yolo_cv(
    data: Path,
    teacher_dir: Path,
    work_dir: Path,
    out: Path,
    recipe: YoloRecipe,
    distil: DistilRecipe | None,
    tag: str,
    teacher_oof: Path,
) -> Path:
    """The student's OOF file (`out`), with the teacher's OOF gate arrays of its weights `tag`
    (`teacher_oof`, checked before any fold trains; `cv_fit.borrowed_gate`)."""
    plan = json.loads((teacher_dir / "plan.json").read_text())
    files, folds = plan["files"], np.asarray(plan["folds"], dtype=np.int64)
    items = all_photos(data)
    if [file_id(i, data) for i in items] != files:
        raise SystemExit("the teacher's CV plan names other photos")
    if not teacher_oof.is_file():
        raise SystemExit(f"no {teacher_oof}: the student's gate is fitted on the teacher's")
    taught = read_oof(teacher_oof)
    if [str(f) for f in taught["files"]] != files or not np.array_equal(taught["folds"], folds):
        raise SystemExit(f"{teacher_oof} holds other photos or folds than the teacher's plan")
    gate = borrowed_gate(taught, tag)
    if "last_feature_distance" not in gate or "negative_names" not in gate:
        raise SystemExit(f"{teacher_oof} has no gate distances for its {tag!r} weights")
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
        teacher = (
            OnnxTeacher(
                teacher_model(teacher_dir, fold, tag),
                work_dir / f"fold{fold}-teacher.onnx",
                recipe.imgsz,
            )
            if distil
            else None
        )
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
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "files": np.asarray(files),
        "labels": np.asarray([i.label for i in items], dtype=np.int64),
        "groups": np.asarray([i.group for i in items]),
        "folds": folds,
        "last_logits": logits,
        **gate,
    }
    np.savez_compressed(out, allow_pickle=False, **arrays)
    return out


def student_report(
    oof: Path,
    work_dir: Path,
    data: Path,
    shared_dir: Path,
    teacher: dict[str, str],
    teacher_report: Path,
) -> dict[str, Any]:
    """`cv_fit.fit_all` of the student's OOF file — at the gate percentiles of the teacher's
    report, so its gate is the one served — with the recipe it was trained with (the CV's
    plan), the teacher (`name`, `weights`), the gap to it and the max-logit bars."""
    taught = json.loads(teacher_report.read_text())
    percentiles = GatePercentiles(**taught["gate"]["percentiles"])
    report = fit_all(oof, work_dir, data, shared_dir, percentiles)
    # the graph outputs probabilities: energy is constant, the OOD score is the max logit
    report.pop("energy")
    report["max_logit"] = energy_bars(read_oof(oof)["last_logits"].max(axis=1))
    plan = json.loads((work_dir / "plan.json").read_text())
    chosen = report["variants"][report["chosen"]]
    report.update(
        recipe=plan["recipe"],
        distillation=plan["distillation"],
        teacher=teacher,
        **teacher_gap(chosen["macro_f1"], teacher_report),
    )
    return report


def teacher_gap(macro_f1: float, teacher_report: Path) -> dict[str, float]:
    """The teacher's OOF macro-F1 (its chosen variant) and how far the student is below it."""
    teacher = json.loads(teacher_report.read_text())
    teacher_f1 = float(teacher["variants"][teacher["chosen"]]["macro_f1"])
    return {"teacher_macro_f1": teacher_f1, "gap_to_teacher": round(teacher_f1 - macro_f1, 4)}


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
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    args.models_dir = args.models_dir or settings.models_dir
    args.teacher = args.teacher or settings.effnet_model
    args.tag = args.tag or chosen_tag(args.models_dir / "cv" / f"{args.teacher}.cv.json")
    teacher_dir = Path("build/cv") / args.teacher
    kind = "plain" if args.no_distil else "distilled"
    name = f"skinscreen-{args.arch}-{kind}"
    recipe = YoloRecipe(arch=args.arch, epochs=args.epochs, imgsz=args.imgsz)
    distil = None if args.no_distil else DistilRecipe(args.temperature, args.alpha)
    cv_dir = args.models_dir / "cv"
    out, work_dir = cv_dir / f"{name}.oof.npz", Path("build/cv") / name
    teacher_oof = cv_dir / f"{args.teacher}.oof.npz"
    run_yolo_cv(args.data, teacher_dir, work_dir, out, recipe, distil, args.tag, teacher_oof)
    teacher = {"name": args.teacher, "weights": args.tag}
    report = student_report(
        out, work_dir, args.data, settings.shared_dir, teacher, cv_dir / f"{args.teacher}.cv.json"
    )
    (cv_dir / f"{name}.cv.json").write_text(json.dumps(report, indent=1) + "\n")
    chosen = report["variants"][report["chosen"]]
    print(json.dumps({k: chosen[k] for k in ("macro_f1", "macro_f1_ci95", "ece_15")}))
    print(f"gap to the teacher: {report.get('gap_to_teacher')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
