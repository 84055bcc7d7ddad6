"""Photo-group cross-fitting of the malignancy threshold and its figures (pure numpy).

Sensitivity counts Carcinoma photos that pass the gate and are referred `urgent` (top class
Carcinoma or P(Carcinoma) ≥ threshold); the flag share counts non-carcinoma photos passing the
gate that are made `urgent`. Per photo group, each near-duplicate group counts once (its photos'
share), and bootstrap 95 % intervals resample groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.evaluation.folds import DEFAULT_SEED, assign_folds
from service.pipeline.domain import CLASSES

CANCER_INDEX = CLASSES.index("Carcinoma")
#: Thresholds are rounded down to this grid so the file is readable and a refit is stable.
GRID = 1e-4


@dataclass(frozen=True)
class Predictions:
    """Calibrated probabilities (n × classes), labels, photo groups and gate pass flags."""

    probs: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    groups: list[str]
    passed: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Predictions:
        return Predictions(
            self.probs[mask],
            self.labels[mask],
            [g for g, keep in zip(self.groups, mask, strict=True) if keep],
            self.passed[mask],
        )


def urgent(preds: Predictions, thresholds: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """The policy's urgent decision per photo (threshold per photo, for cross-fitted use)."""
    p_cancer = preds.probs[:, CANCER_INDEX]
    top_cancer = preds.probs.argmax(axis=1) == CANCER_INDEX
    flagged: npt.NDArray[np.bool_] = preds.passed & (top_cancer | (p_cancer >= thresholds))
    return flagged


def fit_threshold(preds: Predictions, target: float, budget: float) -> float:
    """The lowest threshold whose non-carcinoma urgent share stays within `budget`, but never
    above the highest threshold that reaches `target` Carcinoma sensitivity (safety first:
    when the budget cannot buy the target sensitivity, the sensitivity wins)."""
    return min(sensitivity_threshold(preds, target), budget_threshold(preds, budget))


def sensitivity_threshold(preds: Predictions, target: float) -> float:
    """Largest t (on the grid) with urgent sensitivity ≥ target among gate-passing carcinomas."""
    cancer = preds.passed & (preds.labels == CANCER_INDEX)
    p = preds.probs[cancer]
    top = p.argmax(axis=1) == CANCER_INDEX
    need = int(np.ceil(target * int(cancer.sum()) - 1e-9))
    rest = np.sort(p[~top, CANCER_INDEX])[::-1]  # the ones only a threshold can catch
    missing = need - int(top.sum())
    if missing <= 0 or rest.size == 0:
        return 0.5  # rank alone reaches the target: P ≥ 0.5 is always the top class
    return _down(rest[min(missing, rest.size) - 1])


def budget_threshold(preds: Predictions, budget: float) -> float:
    """Smallest t (on the grid) flagging at most `budget` of the gate-passing non-carcinomas."""
    other = preds.passed & (preds.labels != CANCER_INDEX)
    p = preds.probs[other]
    top = p.argmax(axis=1) == CANCER_INDEX
    allowed = int(np.floor(budget * int(other.sum()) + 1e-9)) - int(top.sum())
    rest = np.sort(p[~top, CANCER_INDEX])[::-1]
    if allowed < 0:
        return 0.5
    if allowed >= rest.size:
        return 0.0
    return round(min(0.5, _down(rest[allowed]) + GRID), 6)


def _down(value: float) -> float:
    return round(float(np.floor(value / GRID) * GRID), 6)


def group_folds(preds: Predictions, k: int, seed: int = DEFAULT_SEED) -> npt.NDArray[np.int64]:
    """Fold index per photo: whole groups per fold, stratified by class (`assign_folds`)."""
    return assign_folds(preds.groups, preds.labels.tolist(), k, seed)


def cross_fit(preds: Predictions, target: float, budget: float, k: int) -> dict[str, Any]:
    """Fit on k-1 folds, decide on the held-out fold; the pooled held-out figures."""
    folds = group_folds(preds, k)
    per_photo = np.zeros(len(preds), dtype=np.float64)
    fitted = []
    for fold in range(k):
        held = folds == fold
        t = fit_threshold(preds.subset(~held), target, budget)
        fitted.append(t)
        per_photo[held] = t
    return {"fold_thresholds": fitted, **triage_figures(preds, per_photo)}


def triage_figures(preds: Predictions, thresholds: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Sensitivity and non-carcinoma flag share, per photo and per photo group, with CIs."""
    flagged = urgent(preds, thresholds)
    cancer = preds.labels == CANCER_INDEX
    sens_mask, flag_mask = preds.passed & cancer, preds.passed & ~cancer
    return {
        "carcinoma_passing_gate": int(sens_mask.sum()),
        "non_carcinoma_passing_gate": int(flag_mask.sum()),
        "sensitivity": _rate(flagged, sens_mask, preds.groups),
        "non_carcinoma_urgent_share": _rate(flagged, flag_mask, preds.groups),
    }


def _rate(
    flagged: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_], groups: list[str]
) -> dict[str, Any]:
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return {"per_photo": None, "per_group": None}
    by_group: dict[str, list[bool]] = {}
    for i in idx:
        by_group.setdefault(groups[i], []).append(bool(flagged[i]))
    shares = np.asarray([np.mean(v) for v in by_group.values()])
    counts = np.asarray([len(v) for v in by_group.values()])
    hits = np.asarray([sum(v) for v in by_group.values()])
    rng = np.random.default_rng(7)
    draws = rng.integers(0, shares.size, size=(2000, shares.size))
    photo_boot = hits[draws].sum(axis=1) / counts[draws].sum(axis=1)
    group_boot = shares[draws].mean(axis=1)
    return {
        "per_photo": round(float(hits.sum() / counts.sum()), 4),
        "per_photo_ci95": [round(float(q), 4) for q in np.quantile(photo_boot, [0.025, 0.975])],
        "per_group": round(float(shares.mean()), 4),
        "per_group_ci95": [round(float(q), 4) for q in np.quantile(group_boot, [0.025, 0.975])],
        "groups": int(shares.size),
        "groups_all_flagged": int((shares == 1.0).sum()),
    }
