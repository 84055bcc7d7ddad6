"""Train the served YOLO student on every photo, distilled from the served EfficientNet, and
ship it with every threshold of its photo-group CV.

`python -m service.training.yolo_final [--arch yolov8n-cls] [--version 2.0.0]`

Reads `models/cv/skinscreen-<arch>-distilled.cv.json` (`yolo_cv`): the recipe, the
distillation knobs, the teacher (the served EfficientNet and its weights), and what was fitted
on the student's out-of-fold predictions — temperature, conformal threshold, malignancy
threshold, max-logit bars (its graph outputs probabilities: no energy). The student trains on
skin6 train + val (2,026 photos) for the recipe's epochs, the last epoch kept, with the
*shipped* teacher (`models/<teacher>.pt`, checked against its card) through onnxruntime. Its
card carries the CV figures; `gate.json` gets its max-logit entry and the served EfficientNet's
feature entry re-keyed to it (the served YOLO measures with those features, and its OOF file
holds the teacher's gate distances, so the fit is the same); `triage.json` its entries; the
ensemble card follows it (`ensemble_relink`, by name).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from service.evaluation.dataset import file_sha256
from service.pipeline.domain import CLASSES
from service.pipeline.gate_config import FeatureThreshold, GateConfig
from service.pipeline.model_card import ModelCard, write_card
from service.settings import Settings
from service.training.cv import all_photos, file_id
from service.training.cv_fit import read_oof
from service.training.cv_fold import weights_for_run
from service.training.ensemble_relink import relink_ensemble
from service.training.oof_entries import (
    card_cv_sections,
    energy_entry,
    feature_entry,
    save_gate_entries,
    save_triage_entries,
)
from service.training.shipping import dataset_fingerprint
from service.training.yolo import YoloRecipe, train_yolo
from service.training.yolo_cv import link_photos
from service.training.yolo_distil import DistilRecipe, OnnxTeacher


def served_teacher(models_dir: Path, teacher: ModelCard, teacher_dir: Path) -> torch.nn.Module:
    """The shipped EfficientNet's torch weights (`<name>.pt`, as its card names them), built
    for its CV run's recipe."""
    pt = teacher.raw["weights"].get("pt")
    if not pt or file_sha256(models_dir / pt) != teacher.raw["weights"].get("pt_sha256"):
        raise SystemExit(f"{teacher.name}: no torch weights matching its card in {models_dir}")
    return weights_for_run(teacher_dir, models_dir / pt, len(CLASSES))


def check_teacher(
    report: dict[str, Any], teacher: ModelCard, config: GateConfig
) -> FeatureThreshold:
    """The served teacher's own feature entry, refused unless the student's CV was taught by
    that model's weights and fitted the very same gate."""
    taught = report["teacher"]
    if taught["name"] != teacher.name:
        raise SystemExit(f"the CV taught from {taught['name']}, the served one is {teacher.name}")
    served_weights = str(teacher.raw["training"]["recipe"].get("weights", "")).split("+")[0]
    if served_weights != taught["weights"]:
        raise SystemExit(
            f"the CV taught from {teacher.name}'s {taught['weights']!r} weights, the served "
            f"ones are {served_weights!r}: run `yolo_cv --tag {served_weights}`"
        )
    own = config.own_features(teacher.onnx_sha256)
    fitted = feature_entry(report, teacher.name, teacher.onnx_sha256, "", "", "")
    same = own is not None and all(
        getattr(own, k) == getattr(fitted, k)
        for k in ("method", "threshold", "soft_threshold", "unusual_threshold")
    )
    if own is None or not same:
        raise SystemExit(f"{teacher.name}'s gate entry is not the one the student's CV fitted")
    return own


def ship_student(
    data: Path,
    models_dir: Path,
    report: dict[str, Any],
    teacher: ModelCard,
    teacher_dir: Path,
    work_dir: Path,
    name: str,
    version: str,
) -> dict[str, Any]:
    """Train on every photo, write the card with the CV figures and the gate/triage entries
    (`report`: the student's CV report, its OOF file beside it in `models_dir/cv`). Trained and
    carded in `work_dir/ship` first: `models_dir` changes only once all of it is ready."""
    borrowed = check_teacher(report, teacher, GateConfig.load(models_dir))
    recipe = replace(YoloRecipe(**report["recipe"]), patience=report["recipe"]["epochs"])
    distil = DistilRecipe(**report["distillation"])
    files = [file_id(i, data) for i in all_photos(data)]
    oof = read_oof(models_dir / "cv" / report["oof"])
    if [str(f) for f in oof["files"]] != files:
        raise SystemExit(f"{report['oof']} names other photos than {data}")
    # every photo trains; fold 0 doubles as Ultralytics' `val` (progress only, never a choice)
    placements = [("train", f) for f in files] + [
        ("val", f) for f, k in zip(files, oof["folds"], strict=True) if int(k) == 0
    ]
    folder = link_photos(data, placements, work_dir / "data")
    onnx_teacher = OnnxTeacher(
        served_teacher(models_dir, teacher, teacher_dir), work_dir / "teacher.onnx", recipe.imgsz
    )
    stage = work_dir / "ship"
    card = train_yolo(
        folder,
        stage,
        name,
        recipe,
        work_dir / "work",
        version=version,
        teacher=onnx_teacher,
        distil=distil,
        keep="last",
        evaluate_on_val=False,
    )
    card["training"]["data"] = {
        "path": str(data),
        **dataset_fingerprint(data),
        "photos": f"skin6 train + val (all {len(files):,} photos)",
        "splits": ["train", "val"],  # `skinscreen evaluate` flags them
    }
    card["training"]["teacher"] = {
        "name": teacher.name,
        "onnx_sha256": teacher.onnx_sha256,
        "weights": report["teacher"]["weights"],
    }
    card["calibration"], card["metrics"] = card_cv_sections(report)
    card["metrics"]["cross_validated"]["gap_to_teacher"] = report.get("gap_to_teacher")
    for key in ("pt", "onnx"):
        shutil.copyfile(stage / card["weights"][key], models_dir / card["weights"][key])
    write_card(models_dir / f"{name}.json", card)
    shipped = ModelCard.load(models_dir / f"{name}.json")
    sha = shipped.onnx_sha256
    feature = replace(borrowed, model_name=name, model_sha256=sha)
    ood = energy_entry(report["max_logit"], name, sha, "max_logit")
    save_gate_entries(models_dir, "yolo", feature, ood)
    save_triage_entries(models_dir, report, "yolo", name, sha)
    relink_ensemble(models_dir, shipped, by_name_only=True)
    return card


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arch", default="yolov8n-cls")
    parser.add_argument("--version", default="2.0.0")
    parser.add_argument("--data", type=Path, default=None, help="default: <shared>/data/skin6")
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    models_dir = args.models_dir or settings.models_dir
    data = args.data or settings.shared_dir / "data" / "skin6"
    student = f"skinscreen-{args.arch}-distilled"
    report = json.loads((models_dir / "cv" / f"{student}.cv.json").read_text())
    name = settings.yolo_model
    if report["recipe"]["arch"] not in name:
        raise SystemExit(f"the served YOLO is {name}, not a {report['recipe']['arch']}")
    teacher = ModelCard.load(models_dir / f"{settings.effnet_model}.json")
    teacher_dir = Path("build/cv") / teacher.name
    card = ship_student(
        data,
        models_dir,
        report,
        teacher,
        teacher_dir,
        Path("build/cv") / student / "final",
        name,
        args.version,
    )
    print(json.dumps({k: card[k] for k in ("name", "version", "weights")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
