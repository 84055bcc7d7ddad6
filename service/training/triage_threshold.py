"""Fit the malignancy threshold of the triage policy on photo-group cross-validated predictions.

`python -m service.training.triage_threshold [--backends effnet yolo ensemble] [--folds 5]`

Each shipped model was trained on skin6 train, so its skin6 val predictions are out of sample.
The threshold is chosen on val, and the *procedure* is evaluated by cross-fitting: val is split
into k folds by near-duplicate photo group (stratified by class), the threshold is fitted on k-1
folds and applied to the held-out fold; the held-out decisions are pooled and scored. The
shipped threshold is then fitted on all of val with the same rule.

The rule (among photos that pass the gate, `ok` or `inconclusive`; urgent = top class
Carcinoma or P(Carcinoma) ≥ t): the lowest t that makes at most `budget` (10 %, set a priori at
two thirds of the 15 % ceiling of the clinical-safety issue) of the non-carcinoma photos
urgent — so a carcinoma runner-up is caught as low as the false-alarm budget allows — but never
above the largest t that still reaches `target` (98 %) Carcinoma sensitivity. Fitting only the
sensitivity target would ship a threshold just under the few carcinoma runner-ups val happens to
hold (0.30 for EfficientNet), and a Milia 80 % / Carcinoma 12 % photo would not be urgent.

It writes `models/triage.json` and prints the threshold, the cross-fitted
Carcinoma sensitivity and the share of non-carcinoma photos made urgent, per photo and per
photo group, with bootstrap 95 % intervals over groups.

When the classifier issue's out-of-fold predictions over train + val land, the same rule and
code refit on them (only `predictions` changes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.evaluation.dataset import find_manifest, list_labelled_images
from service.evaluation.triage_cv import (
    Predictions,
    cross_fit,
    fit_threshold,
    triage_figures,
)
from service.images import load_rgb
from service.logging import configure_logging
from service.pipeline.backends import (
    ENSEMBLE_CARD,
    available_backends,
    card_path,
    load_screener,
)
from service.pipeline.domain import CLASSES
from service.pipeline.triage_config import MalignancyThreshold, TriageConfig
from service.settings import Settings

TARGET = 0.98
BUDGET = 0.10


def predictions(settings: Settings, backend: str, folder: Path) -> tuple[Predictions, str, str]:
    """Gate status and calibrated probabilities of `backend` on every photo of `folder`."""
    screener = load_screener(settings, backend)
    items = list_labelled_images(folder, CLASSES, find_manifest(folder))
    probs, passed = [], []
    for item in tqdm(items, desc=f"triage {backend}", unit="img", file=sys.stderr):
        gate, classification = screener.screen(load_rgb(item.path))
        probs.append([classification.probabilities[c] for c in CLASSES])
        passed.append(gate.status != "rejected")
    info = screener.classifier.info
    return (
        Predictions(
            probs=np.asarray(probs, dtype=np.float64),
            labels=np.asarray([i.label for i in items], dtype=np.int64),
            groups=[i.group for i in items],
            passed=np.asarray(passed, dtype=bool),
        ),
        info.name,
        info.sha256,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--target", type=float, default=TARGET)
    parser.add_argument("--budget", type=float, default=BUDGET)
    parser.add_argument("--data", type=Path, default=None, help="skin6 val folder")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write")
    args = parser.parse_args(argv)
    configure_logging()
    settings = Settings()
    folder = args.data or settings.shared_dir / "data" / "skin6" / "val"
    config = TriageConfig.load(settings.models_dir)
    thresholds = dict(config.thresholds)
    for backend in args.backends or available_backends(settings):
        preds, name, sha = predictions(settings, backend, folder)
        held_out = cross_fit(preds, args.target, args.budget, args.folds)
        threshold = fit_threshold(preds, args.target, args.budget)
        figures = {
            "folds": args.folds,
            "target_sensitivity": args.target,
            "non_carcinoma_budget": args.budget,
            "cross_fitted": held_out,
            "in_sample_at_shipped_threshold": triage_figures(preds, np.full(len(preds), threshold)),
        }
        print(json.dumps({"backend": backend, "threshold": threshold, **figures}, indent=1))
        thresholds[backend] = MalignancyThreshold(
            model_name=name,
            model_sha256=sha,
            threshold=threshold,
            target_sensitivity=args.target,
            fitted_on=f"skin6 val ({len(preds)} photos), {args.folds}-fold photo-group cross-fit",
            cross_validated=figures,
        )
    if not args.dry_run:
        print(TriageConfig(thresholds).save(settings.models_dir))
        for backend, entry in thresholds.items():
            record_in_card(settings, backend, entry)
    return 0


def record_in_card(settings: Settings, backend: str, entry: MalignancyThreshold) -> None:
    """The model card documents its malignancy threshold and the figures it was chosen on."""
    path = (
        settings.models_dir / ENSEMBLE_CARD
        if backend == "ensemble"
        else card_path(settings, backend)
    )
    if not path.is_file():
        return
    card = json.loads(path.read_text(encoding="utf-8"))
    held_out = entry.cross_validated.get("cross_fitted", {})
    card["triage"] = {
        "malignancy_threshold": entry.threshold,
        "rule": "urgent when Carcinoma is the top class or P(Carcinoma) >= threshold",
        "target_sensitivity": entry.target_sensitivity,
        "non_carcinoma_budget": entry.cross_validated.get("non_carcinoma_budget"),
        "fitted_on": entry.fitted_on,
        "cross_fitted_carcinoma_sensitivity": held_out.get("sensitivity"),
        "cross_fitted_non_carcinoma_urgent_share": held_out.get("non_carcinoma_urgent_share"),
    }
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
