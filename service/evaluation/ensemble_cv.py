"""Ensemble weights fitted on out-of-fold predictions, judged by cross-fitting (pure numpy).

Each member's OOF logits are calibrated by its own temperature; the ensemble is the weighted
mean of the calibrated probabilities, sharpened by one ensemble temperature (what
`EnsembleClassifier` computes with `weights`). Weights are chosen on a simplex grid by NLL. For
the cross-fitted figures every fold is judged with member temperatures, weights and ensemble
temperature fitted on the other folds only; the ensemble ships as the default only when its
cross-fitted macro-F1 beats the best single member's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from service.evaluation.calibration import fit_temperature, negative_log_likelihood
from service.evaluation.cv_metrics import Oof, cross_fitted_temperature, figures, softmax

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
STEP = 0.05


def simplex(members: int, step: float = STEP) -> list[tuple[float, ...]]:
    """Every weight vector on a `step` grid that sums to 1."""
    n = round(1 / step)
    return [
        tuple(c / n for c in combo)
        for combo in itertools.product(range(n + 1), repeat=members)
        if sum(combo) == n
    ]


def mixture_logits(probs: Sequence[FloatArray], weights: Sequence[float]) -> FloatArray:
    mixed = sum(w * p for w, p in zip(weights, probs, strict=True))
    result: FloatArray = np.log(np.clip(np.asarray(mixed), 1e-12, 1.0))
    return result


def fit_ensemble(
    member_logits: Sequence[FloatArray],
    labels: IntArray,
    temperatures: Sequence[float] | None = None,
) -> tuple[list[float], tuple[float, ...], float]:
    """(member temperatures, weights, ensemble temperature) minimising NLL on these photos
    (the members' temperatures fitted here too unless given)."""
    if temperatures is None:
        temperatures = [fit_temperature(lg, labels) for lg in member_logits]
    temperatures = list(temperatures)
    probs = [softmax(lg, t) for lg, t in zip(member_logits, temperatures, strict=True)]
    best: tuple[float, tuple[float, ...], float] | None = None
    for weights in simplex(len(member_logits)):
        mixed = mixture_logits(probs, weights)
        t = fit_temperature(mixed, labels)
        nll = negative_log_likelihood(mixed, labels, t)
        if best is None or nll < best[0]:
            best = (nll, weights, t)
    assert best is not None
    return temperatures, best[1], best[2]


def cross_fitted_mixture(
    member_logits: Sequence[FloatArray], oof: Oof
) -> tuple[FloatArray, list[list[float]], list[float]]:
    """Each fold's log mixture (before the ensemble temperature) with member temperatures and
    weights fitted on the other folds; those weights and ensemble temperatures per fold."""
    mixed = np.zeros_like(member_logits[0], dtype=np.float64)
    fold_weights, fold_temperatures = [], []
    for fold in range(oof.k):
        held = oof.folds == fold
        temps, weights, t = fit_ensemble([lg[~held] for lg in member_logits], oof.labels[~held])
        fold_weights.append(list(weights))
        fold_temperatures.append(t)
        held_probs = [softmax(lg[held], tm) for lg, tm in zip(member_logits, temps, strict=True)]
        mixed[held] = mixture_logits(held_probs, weights)
    return mixed, fold_weights, fold_temperatures


def cross_fitted_probabilities(
    member_logits: Sequence[FloatArray], oof: Oof
) -> tuple[FloatArray, list[list[float]]]:
    """Each fold's calibrated ensemble probabilities, everything fitted on the other folds;
    the weights per fold."""
    mixed, fold_weights, fold_temperatures = cross_fitted_mixture(member_logits, oof)
    probs = np.zeros_like(mixed)
    for fold, t in enumerate(fold_temperatures):
        held = oof.folds == fold
        probs[held] = softmax(mixed[held], t)
    return probs, fold_weights


def member_figures(
    member_logits: Sequence[FloatArray], oof: Oof, classes: Sequence[str]
) -> list[dict[str, Any]]:
    """Each member's figures alone, its temperature cross-fitted."""
    singles = []
    for lg in member_logits:
        single, _ = cross_fitted_temperature(Oof(lg, oof.labels, oof.groups, oof.folds))
        singles.append(figures(single, oof, classes))
    return singles


def cross_fitted_ensemble(
    member_logits: Sequence[FloatArray], oof: Oof, classes: Sequence[str]
) -> dict[str, Any]:
    """Figures of the ensemble and of each member, every fold judged with fits on the others."""
    probs, fold_weights = cross_fitted_probabilities(member_logits, oof)
    ensemble = figures(probs, oof, classes)
    singles = member_figures(member_logits, oof, classes)
    best_single = max(s["macro_f1"] for s in singles)
    temps, weights, t = fit_ensemble(member_logits, oof.labels)
    return {
        "ensemble": ensemble,
        "members": singles,
        "fold_weights": fold_weights,
        "weights": list(weights),
        "member_temperatures": temps,
        "temperature": t,
        "beats_best_single": bool(ensemble["macro_f1"] > best_single),
    }
