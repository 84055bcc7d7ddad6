"""Evaluate an exported ONNX model on the val split and write its model card."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.evaluation.calibration import fit_temperature
from service.evaluation.dataset import file_sha256, find_manifest, list_labelled_images
from service.evaluation.metrics import classification_metrics, group_metrics
from service.images import load_rgb
from service.pipeline.classifier import OnnxClassifier, softmax
from service.pipeline.model_card import ModelCard, write_card


def dataset_fingerprint(data: Path) -> dict[str, Any]:
    """Hash of the manifest (skin6) or of the sorted file list, so a card names its data."""
    manifest = find_manifest(data)
    if manifest is not None:
        return {"manifest": manifest.name, "manifest_sha256": file_sha256(manifest)}
    digest = hashlib.sha256()
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(data)}:{file_sha256(path)}\n".encode())
    return {"manifest": None, "files_sha256": digest.hexdigest()}


def ship_model(
    *,
    data: Path,
    out_dir: Path,
    name: str,
    version: str,
    architecture: str,
    framework: str,
    imgsz: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    output: str,
    recipe: dict[str, Any],
    outputs: tuple[str, ...] = (),
    extra_files: dict[str, str] | None = None,
    training_log: dict[str, Any] | None = None,
    progress: Callable[[str], None] = print,
    evaluate_on_val: bool = True,
) -> dict[str, Any]:
    """Write `out_dir/<name>.json` for `out_dir/<name>.onnx`, with calibrated val metrics.

    `outputs` names the graph's outputs when it has more than the classifier's (e.g. features).
    Without `evaluate_on_val` (a model trained on val too) the card has no metrics or
    calibration: the caller adds its cross-validated ones.
    """
    classes = tuple(sorted(p.name for p in (data / "train").iterdir() if p.is_dir()))
    onnx_path = out_dir / f"{name}.onnx"
    weights: dict[str, str] = {"onnx": onnx_path.name, "onnx_sha256": file_sha256(onnx_path)}
    for key, file_name in (extra_files or {}).items():
        weights[key] = file_name
        weights[f"{key}_sha256"] = file_sha256(out_dir / file_name)
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "architecture": architecture,
        "framework": framework,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "classes": list(classes),
        "imgsz": imgsz,
        "preprocess": {
            "resize": "shorter edge to imgsz, bilinear (torchvision rounding)",
            "crop": "center imgsz x imgsz",
            "mean": list(mean),
            "std": list(std),
        },
        "output": output,
        **({"outputs": list(outputs)} if outputs else {}),
        "weights": weights,
        "training": {"recipe": recipe, "data": {"path": str(data), **dataset_fingerprint(data)}},
    }
    if training_log:
        card["training"]["log"] = training_log
    card_path = out_dir / f"{name}.json"
    write_card(card_path, card)
    if not evaluate_on_val:
        return card

    classifier = OnnxClassifier(ModelCard.load(card_path))
    val = list_labelled_images(data / "val", classes, find_manifest(data))
    logits = np.concatenate(
        [
            classifier.logits([load_rgb(item.path)])
            for item in tqdm(val, desc=f"evaluating {name} on val", unit="img")
        ]
    )
    y_true = np.array([item.label for item in val], dtype=np.int64)
    groups = [item.group for item in val]
    temperature = fit_temperature(logits, y_true)
    raw = softmax(logits)
    calibrated = softmax(logits, temperature)
    metrics = classification_metrics(calibrated, y_true, classes)
    card["calibration"] = {
        "method": "temperature scaling fitted on val (NLL)",
        "temperature": temperature,
        "ece_15_before": classification_metrics(raw, y_true, classes)["ece_15"],
        "ece_15_after": metrics["ece_15"],
    }
    card["metrics"] = {
        "val": metrics,
        "val_by_photo_group": group_metrics(calibrated, y_true, groups, classes),
    }
    write_card(card_path, card)
    progress(
        f"{name}: val top-1 {metrics['top1']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"T={temperature}, ECE {card['calibration']['ece_15_before']} → {metrics['ece_15']}"
    )
    return card
