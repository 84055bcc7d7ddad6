"""Cross-validated figures from out-of-fold (OOF) predictions (pure numpy).

Everything fitted here is cross-fitted: a temperature or a conformal threshold is fitted on the
OOF predictions of k−1 folds and judged on the held-out fold, so no figure is scored on the
photos it was chosen on. Intervals are percentile bootstraps over photo groups (a group of
near-duplicates is drawn whole), per photo and per class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.evaluation.calibration import fit_temperature
from service.evaluation.metrics import classification_metrics, expected_calibration_error
from service.pipeline.conformal import conformal_threshold

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DRAWS = 1000


def softmax(logits: npt.NDArray[np.floating], temperature: float = 1.0) -> FloatArray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    result: FloatArray = z / z.sum(axis=1, keepdims=True)
    return result


@dataclass(frozen=True)
class Oof:
    """OOF logits of one variant with the photos' labels, groups and folds."""

    logits: FloatArray
    labels: IntArray
    groups: Sequence[str]
    folds: IntArray

    @property
    def k(self) -> int:
        return int(self.folds.max()) + 1


def macro_f1(y_true: IntArray, y_pred: IntArray, n_classes: int) -> float:
    scores = []
    for c in range(n_classes):
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        fp = float(np.sum((y_pred == c) & (y_true != c)))
        fn = float(np.sum((y_pred != c) & (y_true == c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def group_bootstrap(
    groups: Sequence[str], statistic: Callable[[IntArray], float], draws: int = DRAWS, seed: int = 7
) -> list[float]:
    """95 % percentile interval of `statistic(photo indices)` over resampled photo groups."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    members = [np.asarray(v, dtype=np.int64) for v in by_group.values()]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        picked = rng.integers(0, len(members), size=len(members))
        values.append(statistic(np.concatenate([members[j] for j in picked])))
    return [round(float(q), 4) for q in np.quantile(values, [0.025, 0.975])]


def cross_fitted_temperature(oof: Oof) -> tuple[FloatArray, list[float]]:
    """Calibrated OOF probabilities, each fold scaled by a T fitted on the other folds."""
    probs = np.zeros_like(oof.logits)
    temperatures = []
    for fold in range(oof.k):
        held = oof.folds == fold
        t = fit_temperature(oof.logits[~held], oof.labels[~held])
        temperatures.append(t)
        probs[held] = softmax(oof.logits[held], t)
    return probs, temperatures


def figures(probs: FloatArray, oof: Oof, classes: Sequence[str]) -> dict[str, Any]:
    """Top-1, macro-F1 and ECE with group-bootstrap intervals, and per-class figures."""
    y, pred = oof.labels, probs.argmax(axis=1)
    n = len(classes)
    metrics = classification_metrics(probs, y, classes)
    result: dict[str, Any] = {
        "n": int(y.size),
        "groups": len(set(oof.groups)),
        "top1": metrics["top1"],
        "top1_ci95": group_bootstrap(oof.groups, lambda i: float(np.mean(pred[i] == y[i]))),
        "macro_f1": metrics["macro_f1"],
        "macro_f1_ci95": group_bootstrap(oof.groups, lambda i: macro_f1(y[i], pred[i], n)),
        "ece_15": metrics["ece_15"],
        "ece_15_ci95": group_bootstrap(
            oof.groups, lambda i: expected_calibration_error(probs[i], y[i])
        ),
        "per_class": {},
        "confusion_matrix": metrics["confusion_matrix"],
    }
    for c, name in enumerate(classes):
        entry = dict(metrics["per_class"][name])
        entry["recall_ci95"] = group_bootstrap(oof.groups, _per_class(_recall, y, pred, c))
        entry["f1_ci95"] = group_bootstrap(oof.groups, _per_class(_f1, y, pred, c))
        result["per_class"][name] = entry
    return result


def _per_class(
    stat: Callable[[IntArray, IntArray, int], float], y: IntArray, pred: IntArray, c: int
) -> Callable[[IntArray], float]:
    return lambda i: stat(y[i], pred[i], c)


def _recall(y: IntArray, pred: IntArray, c: int) -> float:
    mask = y == c
    return float(np.mean(pred[mask] == c)) if mask.any() else 0.0


def _f1(y: IntArray, pred: IntArray, c: int) -> float:
    tp = float(np.sum((pred == c) & (y == c)))
    wrong = float(np.sum((pred == c) != (y == c)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + wrong)


def set_members(probs: FloatArray, threshold: float) -> npt.NDArray[np.bool_]:
    """Membership matrix of the conformal sets (`pipeline.conformal.prediction_set`)."""
    members: npt.NDArray[np.bool_] = (1.0 - probs) <= threshold + 1e-12
    members[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return members


def cross_fitted_conformal(oof: Oof, alpha: float) -> dict[str, Any]:
    """Coverage and set sizes on each fold with the temperature and q̂ both fitted on the other
    folds only (nothing of the judged fold enters either)."""
    members = np.zeros(oof.logits.shape, dtype=bool)
    probs = np.zeros(oof.logits.shape, dtype=np.float64)
    thresholds = []
    for fold in range(oof.k):
        held = oof.folds == fold
        t = fit_temperature(oof.logits[~held], oof.labels[~held])
        rest = softmax(oof.logits[~held], t)
        q = conformal_threshold(rest[np.arange(len(rest)), oof.labels[~held]], alpha)
        thresholds.append(round(q, 6))
        probs[held] = softmax(oof.logits[held], t)
        members[held] = set_members(probs[held], q)
    covered = members[np.arange(len(probs)), oof.labels]
    sizes = members.sum(axis=1)
    top_right = probs.argmax(axis=1) == oof.labels
    return {
        "coverage_target": 1 - alpha,
        "fold_thresholds": thresholds,
        "coverage": round(float(covered.mean()), 4),
        "coverage_ci95": group_bootstrap(oof.groups, lambda i: float(covered[i].mean())),
        "mean_set_size": round(float(sizes.mean()), 4),
        "share_singleton": round(float(np.mean(sizes == 1)), 4),
        "singleton_accuracy": (
            round(float(top_right[sizes == 1].mean()), 4) if (sizes == 1).any() else None
        ),
        "coverage_per_class": {
            str(c): round(float(covered[oof.labels == c].mean()), 4)
            for c in range(oof.logits.shape[-1])
        },
        "members": members,
    }
