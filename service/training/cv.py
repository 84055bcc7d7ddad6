"""`skinscreen train --cv 5`: photo-group k-fold cross-validation of the EfficientNet recipe.

All labelled photos (skin6 train + val, 2,026) are dealt into k folds by manifest group,
stratified by class (`service.evaluation.folds`). Each fold trains on the others with the recipe
as fixed in advance (`cv_fold`), so every photo gets an out-of-fold (OOF) prediction from a model
that never saw it or its near-duplicates. The run is resumable: finished folds are skipped, a
fold in progress resumes from its last epoch checkpoint. When every fold is done the OOF file
(`models/cv/<name>.oof.npz`: file ids, labels, groups, folds, logits, flipped-image logits and
the cross-fitted feature-space distance, per weight tag) is assembled; every threshold the
service uses is then fitted on it (`python -m service.training.cv_fit`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.evaluation.dataset import LabelledImage, find_manifest, list_labelled_images
from service.evaluation.folds import DEFAULT_SEED, assign_folds
from service.images import load_rgb
from service.pipeline.domain import CLASSES
from service.pipeline.feature_ood import fit_feature_distance
from service.training.cv_fold import TAGS, train_fold
from service.training.cv_layers import layer_arrays
from service.training.cv_negatives import negative_distances, negative_images
from service.training.effnet_model import WEIGHT_PACKAGES, EffnetRecipe

DEFAULT_NAME = "skinscreen-efficientnet-lite0"
#: The shipped recipe (fixed before the CV; nothing in it is chosen on a held-out fold).
CV_RECIPE = EffnetRecipe(epochs=14, patience=14, max_minutes=0.0)
EMA_DECAY = 0.995


def chosen_tag(report: Path) -> str:
    """The weights (`last` or `ema`) of a CV report's chosen variant; `ema` without a report."""
    if not report.is_file():
        return "ema"
    return str(json.loads(report.read_text(encoding="utf-8"))["chosen"]).split("+")[0]


def all_photos(data: Path) -> list[LabelledImage]:
    """skin6 train + val with their manifest groups; a group never spans both splits."""
    manifest = find_manifest(data)
    items = [
        *list_labelled_images(data / "train", CLASSES, manifest),
        *list_labelled_images(data / "val", CLASSES, manifest),
    ]
    labels: dict[str, int] = {}
    for item in items:
        if labels.setdefault(item.group, item.label) != item.label:
            raise ValueError(f"photo group {item.group} holds two classes")
    return items


def file_id(item: LabelledImage, data: Path) -> str:
    return item.path.resolve().relative_to(data.resolve()).as_posix()


def prepare(data: Path, work_dir: Path, k: int, recipe: EffnetRecipe) -> npt.NDArray[np.int64]:
    """Assign (or, when resuming, re-check) the folds; the plan is written to `plan.json`."""
    items = all_photos(data)
    folds = assign_folds([i.group for i in items], [i.label for i in items], k, DEFAULT_SEED)
    plan = {
        "k": k,
        "seed": DEFAULT_SEED,
        "recipe": asdict(recipe),
        "ema_decay": EMA_DECAY,
        "files": [file_id(i, data) for i in items],
        "folds": folds.tolist(),
    }
    path = work_dir / "plan.json"
    if path.is_file():
        before = json.loads(path.read_text())
        # a plan from before a recipe field existed holds that field's default
        before["recipe"] = asdict(EffnetRecipe(**before.get("recipe", {})))
        if before != plan:
            raise SystemExit(
                f"{path} was written for another data set, k or recipe: use a new "
                "--work-dir (or delete it to start over)"
            )
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plan))
    return folds


def run_cv(
    data: Path, work_dir: Path, out: Path, k: int, recipe: EffnetRecipe, shared_dir: Path
) -> Path:
    """Every fold (resuming), then the OOF file; its path. `shared_dir/dicom` holds the DICOM
    negatives (skipped when absent)."""
    items = all_photos(data)
    folds = prepare(data, work_dir, k, recipe)
    log_file = (work_dir / "progress.log").open("a", buffering=1)

    def progress(line: str) -> None:
        print(line, flush=True)
        log_file.write(line + "\n")

    monitor_from = max(1, recipe.epochs - 6)
    for fold in range(k):
        train_fold(items, folds, fold, recipe, work_dir, CLASSES, EMA_DECAY, monitor_from, progress)
    return assemble(items, folds, data, work_dir, out, recipe.imgsz, shared_dir)


def assemble(
    items: Sequence[LabelledImage],
    folds: npt.NDArray[np.int64],
    data: Path,
    work_dir: Path,
    out: Path,
    imgsz: int,
    shared_dir: Path,
) -> Path:
    """Pool the folds' held-out outputs into one OOF file (features reduced to distances), with
    the negatives' distances under every fold's model, and the multi-layer ones (`cv_layers`)."""
    n, k = len(items), int(folds.max()) + 1
    labels = np.asarray([i.label for i in items], dtype=np.int64)
    arrays: dict[str, npt.NDArray[Any]] = {
        "files": np.asarray([file_id(i, data) for i in items]),
        "labels": labels,
        "groups": np.asarray([i.group for i in items]),
        "folds": folds,
    }
    for tag in TAGS:
        arrays[f"{tag}_logits"] = np.zeros((n, len(CLASSES)), np.float32)
        arrays[f"{tag}_flip_logits"] = np.zeros((n, len(CLASSES)), np.float32)
        arrays[f"{tag}_feature_distance"] = np.zeros(n, np.float64)
    for fold in range(k):
        with np.load(work_dir / f"fold{fold}.npz") as part:
            held, train = part["held_index"], part["train_index"]
            for tag in TAGS:
                arrays[f"{tag}_logits"][held] = part[f"{tag}_logits"]
                arrays[f"{tag}_flip_logits"][held] = part[f"{tag}_flip_logits"]
                distance = fit_feature_distance(part[f"{tag}_train_features"], labels[train])
                arrays[f"{tag}_feature_distance"][held] = distance.score(part[f"{tag}_features"])
    negatives = negative_images(shared_dir, load_rgb(items[0].path))
    arrays["negative_names"] = np.asarray(list(negatives))
    arrays["negative_kinds"] = np.asarray([kind for kind, _ in negatives.values()])
    for tag in TAGS:
        arrays[f"{tag}_negative_distances"] = negative_distances(
            work_dir, k, tag, [img for _, img in negatives.values()], labels, imgsz
        )
        arrays.update(
            layer_arrays(
                [i.path for i in items],
                labels,
                folds,
                work_dir,
                tag,
                imgsz,
                [img for _, img in negatives.values()],
            )
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, allow_pickle=False, **arrays)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.training.cv", description=__doc__)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("models/cv"))
    parser.add_argument("--epochs", type=int, default=CV_RECIPE.epochs)
    parser.add_argument("--arch", default=CV_RECIPE.arch, choices=sorted(WEIGHT_PACKAGES))
    parser.add_argument("--imgsz", type=int, default=CV_RECIPE.imgsz, help="inference size")
    parser.add_argument(
        "--train-imgsz", type=int, default=CV_RECIPE.train_imgsz, help="training crop size"
    )
    parser.add_argument(
        "--shared", type=Path, default=None, help="shared folder (DICOM negatives); settings"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.shared is None:
        from service.settings import Settings

        args.shared = Settings().shared_dir
    recipe = EffnetRecipe(
        **{
            **asdict(CV_RECIPE),
            "epochs": args.epochs,
            "patience": args.epochs,
            "arch": args.arch,
            "imgsz": args.imgsz,
            "train_imgsz": args.train_imgsz,
            "cache_edge": args.train_imgsz + args.train_imgsz // 4,
        }
    )
    work_dir = args.work_dir or Path("build/cv") / args.name
    out = run_cv(
        args.data, work_dir, args.out / f"{args.name}.oof.npz", args.k, recipe, args.shared
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
