"""Pure-numpy classification metrics: top-1, macro-F1, per-class P/R/F1, confusion, ECE."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def confusion_matrix(y_true: IntArray, y_pred: IntArray, n_classes: int) -> IntArray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def expected_calibration_error(probs: FloatArray, y_true: IntArray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017), top-label."""
    if len(y_true) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            ece += in_bin.mean() * gap
    return float(ece)


def classification_metrics(
    probs: FloatArray, y_true: IntArray, classes: Sequence[str]
) -> dict[str, Any]:
    """Top-1, macro-F1, per-class precision/recall/F1/support, confusion matrix and ECE."""
    n = len(classes)
    y_pred = probs.argmax(axis=1).astype(np.int64)
    matrix = confusion_matrix(y_true, y_pred, n)
    per_class: dict[str, dict[str, float | int]] = {}
    f1s = []
    for i, name in enumerate(classes):
        tp = int(matrix[i, i])
        predicted = int(matrix[:, i].sum())
        actual = int(matrix[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[name] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": actual,
        }
    total = int(matrix.sum())
    return {
        "n": total,
        "top1": round(float(np.trace(matrix)) / total, 4) if total else 0.0,
        "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0,
        "ece_15": round(expected_calibration_error(probs, y_true), 4),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(classes), "rows_true_cols_pred": matrix.tolist()},
    }


def group_metrics(
    probs: FloatArray, y_true: IntArray, groups: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Metrics where each independent photo group counts once.

    The skin6 data holds flipped/cropped copies of one photo; a group's prediction is the mean
    probability over its copies, so a photo seen five times does not weigh five times.
    Also lists each group's own accuracy so weak photos can be inspected.
    """
    order: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        order.setdefault(group, []).append(index)
    keys = sorted(order)
    group_probs = np.stack([probs[order[k]].mean(axis=0) for k in keys])
    group_true = np.array([y_true[order[k][0]] for k in keys], dtype=np.int64)
    summary = classification_metrics(group_probs, group_true, classes)
    per_group = {
        k: {
            "class": classes[int(y_true[order[k][0]])],
            "images": len(order[k]),
            "correct": int((probs[order[k]].argmax(axis=1) == y_true[order[k]]).sum()),
        }
        for k in keys
    }
    fully_right = sum(1 for v in per_group.values() if v["correct"] == v["images"])
    summary["groups"] = len(keys)
    summary["groups_all_images_correct"] = fully_right
    summary["per_group"] = per_group
    return summary
