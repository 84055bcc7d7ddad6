"""Fit every decision threshold on the out-of-fold (OOF) predictions and report CV figures.

`python -m service.training.cv_fit [--oof models/cv/<name>.oof.npz] [--work-dir build/cv/<name>]`

For each weight variant of the CV run (last epoch / EMA, without / with flip test-time
augmentation): cross-fitted temperature → top-1, macro-F1, ECE with photo-group bootstrap
intervals, per class. For the best variant: split-conformal sets (coverage 95 %), gate v2
feature thresholds (`cv_gate_report`: on the multi-layer distance when the OOF file has it;
rejection share on skin, false acceptance on negatives scored by every fold's model), the
malignancy threshold of the triage policy — each cross-fitted — and the
values fitted on all OOF photos that the final model ships with. Writes
`models/cv/<name>.cv.json`.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.evaluation.calibration import fit_temperature
from service.evaluation.cv_metrics import (
    Oof,
    cross_fitted_conformal,
    cross_fitted_temperature,
    figures,
    softmax,
)
from service.evaluation.metrics import group_metrics
from service.evaluation.triage_cv import Predictions, cross_fit, fit_threshold
from service.images import load_rgb
from service.pipeline.conformal import conformal_threshold
from service.pipeline.domain import CLASSES
from service.pipeline.ood import logsumexp
from service.pipeline.quality import measure
from service.settings import Settings
from service.training.cv_fold import TAGS
from service.training.cv_gate import GatePercentiles
from service.training.cv_gate_report import gate_section
from service.training.cv_negatives import negative_images
from service.training.oof_entries import energy_bars
from service.training.triage_threshold import BUDGET, TARGET

ALPHA = 0.05


#: Gate arrays of an OOF file, per weight tag (`<tag>_<suffix>`), and the shared ones.
GATE_SUFFIXES = (
    "feature_distance",
    "negative_distances",
    "layer_distances",
    "negative_layer_distances",
)
GATE_SHARED_KEYS = ("layer_names", "negative_names", "negative_kinds")


def variants(oof: npt.NDArray[Any] | Any) -> dict[str, npt.NDArray[np.float64]]:
    """Logits of every variant the file holds: `<tag>` and `<tag>+flip` (mean of plain and
    flipped logits). A YOLO student's or an ensemble's file holds one, `last`."""
    result = {}
    for tag in TAGS:
        if f"{tag}_logits" not in oof:
            continue
        plain = oof[f"{tag}_logits"].astype(np.float64)
        result[tag] = plain
        if f"{tag}_flip_logits" in oof:
            result[f"{tag}+flip"] = (plain + oof[f"{tag}_flip_logits"].astype(np.float64)) / 2
    return result


def variant_logits(oof: dict[str, npt.NDArray[Any]], variant: str, where: str) -> npt.NDArray[Any]:
    """One variant's logits, or a clear refusal naming the variants `where` holds."""
    held = variants(oof)
    if variant not in held:
        raise SystemExit(f"{where} holds the variants {sorted(held)}, not {variant!r}")
    return held[variant]


def read_oof(path: Path | str) -> dict[str, npt.NDArray[Any]]:
    """An OOF file's arrays."""
    with np.load(path) as oof:
        return {key: oof[key] for key in oof.files}


def borrowed_gate(source: dict[str, npt.NDArray[Any]], tag: str) -> dict[str, npt.NDArray[Any]]:
    """The gate arrays of `source`'s weights `tag`, keyed as a single-variant (`last`) file's:
    for a model whose served gate measures with another model's features (a YOLO student, an
    ensemble), so `fit_all` fits the gate that model is really served with."""
    arrays = {k: source[k] for k in GATE_SHARED_KEYS if k in source}
    for suffix in GATE_SUFFIXES:
        if f"{tag}_{suffix}" in source:
            arrays[f"last_{suffix}"] = source[f"{tag}_{suffix}"]
    return arrays


def photo_measurements(files: Sequence[str], data: Path, cache: Path) -> list[dict[str, float]]:
    """Quality measurements of every photo (cached: they depend on the pixels only)."""
    if cache.is_file():
        stored: dict[str, dict[str, float]] = json.loads(cache.read_text())
        if set(stored) == set(files):
            return [stored[f] for f in files]
    stored = {f: measure(load_rgb(data / f)) for f in files}
    cache.write_text(json.dumps(stored))
    return [stored[f] for f in files]


def fit_all(
    oof_path: Path, work_dir: Path, data: Path, shared_dir: Path, percentiles: GatePercentiles
) -> dict[str, Any]:
    """The report described in the module doc (`data`: the photos the OOF file names)."""
    oof = read_oof(oof_path)
    labels, folds = oof["labels"].astype(np.int64), oof["folds"].astype(np.int64)
    groups = [str(g) for g in oof["groups"]]
    report: dict[str, Any] = {"oof": oof_path.name, "variants": {}}
    best, best_f1 = "", -1.0
    for name, logits in variants(oof).items():
        view = Oof(logits, labels, groups, folds)
        probs, temperatures = cross_fitted_temperature(view)
        entry = figures(probs, view, CLASSES)
        entry["fold_temperatures"] = temperatures
        report["variants"][name] = entry
        print(
            f"{name:10s} top-1 {entry['top1']:.4f} {entry['top1_ci95']}  "
            f"macro-F1 {entry['macro_f1']:.4f} {entry['macro_f1_ci95']}  ECE {entry['ece_15']:.4f}"
        )
        if entry["macro_f1"] > best_f1:
            best, best_f1 = name, entry["macro_f1"]
    report["chosen"] = best
    logits = variants(oof)[best]
    view = Oof(logits, labels, groups, folds)
    probs, _ = cross_fitted_temperature(view)
    by_group = group_metrics(probs, labels, groups, CLASSES)
    by_group.pop("per_group")
    report["variants"][best]["by_photo_group"] = by_group
    temperature = fit_temperature(logits, labels)
    conformal = cross_fitted_conformal(view, ALPHA)
    members = conformal.pop("members")
    calibrated_all = softmax(logits, temperature)
    q_all = conformal_threshold(calibrated_all[np.arange(len(labels)), labels], ALPHA)
    report["temperature"] = temperature
    report["energy"] = energy_bars(logsumexp(logits))
    plan = work_dir / "plan.json"
    if plan.is_file():
        report["recipe"] = json.loads(plan.read_text())["recipe"]
    report["conformal"] = {**conformal, "threshold": math.ceil(q_all * 1e6) / 1e6}
    print(f"conformal: {report['conformal']}")

    tag = best.split("+")[0]
    files = [str(f) for f in oof["files"]]
    measurements = photo_measurements(files, data, work_dir / "measurements.json")
    negatives = negative_images(shared_dir, load_rgb(data / files[0]))
    names = [str(n) for n in oof["negative_names"]]
    if set(names) - set(negatives):
        raise SystemExit("the OOF file's negatives differ from these: re-run the CV to re-assemble")
    judged = {n: (negatives[n][0], measure(negatives[n][1])) for n in names}
    verdicts, gate = gate_section(oof, tag, measurements, judged, percentiles)
    report["gate"] = gate
    print(f"gate: {json.dumps({k: v for k, v in gate.items() if k != 'negatives'})}")
    for n, v in gate["negatives"].items():
        print(f"  {n:32s} {v['kind']:22s} {v['verdicts']} d={v['distance_median']}")

    passed = np.asarray([v != "rejected" for v in verdicts])
    preds = Predictions(probs, labels, groups, passed)
    report["triage"] = {
        "cross_fitted": cross_fit(preds, TARGET, BUDGET, int(folds.max()) + 1),
        "threshold": fit_threshold(
            Predictions(calibrated_all, labels, groups, passed), TARGET, BUDGET
        ),
    }
    inconclusive_set = members.sum(axis=1) > 1
    report["inconclusive_by_set"] = round(float(inconclusive_set[passed].mean()), 4)
    print(f"triage: {json.dumps(report['triage'])}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", default=None, help="default: the served effnet model")
    parser.add_argument("--oof", type=Path, default=None)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None, help="default: <shared>/data/skin6")
    parser.add_argument("--reject-percentile", type=float, default=GatePercentiles.reject)
    parser.add_argument("--soft-percentile", type=float, default=GatePercentiles.soft)
    parser.add_argument("--unusual-percentile", type=float, default=GatePercentiles.unusual)
    parser.add_argument(
        "--unusual-few-skin-percentile", type=float, default=GatePercentiles.unusual_few_skin
    )
    args = parser.parse_args(argv)
    settings = Settings()
    args.name = args.name or settings.effnet_model
    oof = args.oof or settings.models_dir / "cv" / f"{args.name}.oof.npz"
    work_dir = args.work_dir or Path("build/cv") / args.name
    percentiles = GatePercentiles(
        args.reject_percentile,
        args.soft_percentile,
        args.unusual_percentile,
        args.unusual_few_skin_percentile,
    )
    data = args.data or settings.shared_dir / "data" / "skin6"
    report = fit_all(oof, work_dir, data, settings.shared_dir, percentiles)
    out = oof.with_name(oof.name.replace(".oof.npz", ".cv.json"))
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
