"""Evaluate the yolo+effnet ensemble on val and write its card (`models/skinscreen-ensemble.json`).

The ensemble averages the members' calibrated probabilities (each member's own temperature),
then applies one ensemble temperature fitted here on val (NLL), exactly as `EnsembleClassifier`
does at serving time.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.evaluation.calibration import fit_temperature
from service.evaluation.dataset import find_manifest, list_labelled_images
from service.evaluation.metrics import classification_metrics, group_metrics
from service.images import load_rgb
from service.pipeline.backends import ENSEMBLE_CARD, card_path
from service.pipeline.classifier import EnsembleClassifier, OnnxClassifier, softmax
from service.pipeline.model_card import write_card
from service.settings import Settings
from service.training.shipping import dataset_fingerprint

MEMBERS = ("yolo", "effnet")


def _member_entry(backend: str, member: OnnxClassifier) -> dict[str, Any]:
    raw = member.card.raw
    return {
        "backend": backend,
        "name": member.info.name,
        "version": member.info.version,
        "card": member.card.path.name,
        "onnx_sha256": member.info.sha256,
        "temperature": member.card.temperature,
        "val_macro_f1": raw.get("metrics", {}).get("val", {}).get("macro_f1"),
        "val_top1": raw.get("metrics", {}).get("val", {}).get("top1"),
    }


def ship_ensemble(
    settings: Settings,
    data: Path | None = None,
    version: str = "1",
    batch: int = 16,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate the mean-of-calibrated-probabilities ensemble on `data/val`; write its card."""
    data = data or settings.shared_dir / "data" / "skin6"
    members = [
        OnnxClassifier.from_card_path(card_path(settings, b), settings.onnx_threads)
        for b in MEMBERS
    ]
    ensemble = EnsembleClassifier(members)
    classes = ensemble.classes
    val = list_labelled_images(data / "val", classes, find_manifest(data))
    chunks = []
    for start in tqdm(range(0, len(val), batch), desc="evaluating ensemble on val", unit="batch"):
        images = [load_rgb(item.path) for item in val[start : start + batch]]
        chunks.append(ensemble.logits(images))
    log_mean = np.concatenate(chunks)
    y_true = np.array([item.label for item in val], dtype=np.int64)
    temperature = fit_temperature(log_mean, y_true)
    probs = softmax(log_mean, temperature)
    ece_before = classification_metrics(softmax(log_mean), y_true, classes)["ece_15"]
    metrics = classification_metrics(probs, y_true, classes)
    card: dict[str, Any] = {
        "name": Path(ENSEMBLE_CARD).stem,
        "version": version,
        "architecture": "ensemble: mean of the members' temperature-calibrated probabilities",
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "classes": list(classes),
        "sha256": ensemble.info.sha256,
        "members": [_member_entry(b, m) for b, m in zip(MEMBERS, members, strict=True)],
        "data": {"path": str(data), **dataset_fingerprint(data)},
        "calibration": {
            "method": "members' own temperatures, then one ensemble temperature fitted on val "
            "(NLL) over the log of the mean probability",
            "temperature": temperature,
            "ece_15_before": ece_before,
            "ece_15_after": metrics["ece_15"],
        },
        "metrics": {
            "val": metrics,
            "val_by_photo_group": group_metrics(
                probs, y_true, [item.group for item in val], classes
            ),
        },
        "note": (
            "Members were early-stopped and temperature-calibrated on this same val split, so "
            "these val metrics are optimistic; they are not an independent test."
        ),
    }
    write_card(settings.models_dir / ENSEMBLE_CARD, card)
    progress(
        f"ensemble: val top-1 {metrics['top1']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {metrics['ece_15']}"
    )
    return card


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m service.training.ensemble`."""
    parser = argparse.ArgumentParser(
        prog="python -m service.training.ensemble", description=__doc__
    )
    parser.add_argument("--data", type=Path, default=None, help="default: <shared>/data/skin6")
    parser.add_argument("--models-dir", type=Path, default=None, help="default: settings")
    parser.add_argument("--version", default="1")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.models_dir is not None:
        settings = settings.model_copy(update={"models_dir": args.models_dir})
    ship_ensemble(settings, args.data, args.version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
