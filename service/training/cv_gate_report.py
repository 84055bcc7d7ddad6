"""The gate v2 section of the CV report: which distance, its cross-fitted verdicts on skin
photos, and every negative judged by every fold model.

The distance is the multi-layer one (`layer_gate`: mean z-scored log distance over the last
layer and five tapped blocks) when the OOF file has it for the tag, else the last layer's.
Negatives scored by fold model k are judged with thresholds fitted on the other folds' skin
photos (and, for the multi-layer score, on their log scales): the same footing as a skin photo
of fold k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from service.pipeline.domain import CLASSES
from service.pipeline.gate_config import QualityThresholds
from service.training.cv_gate import (
    GatePercentiles,
    cross_fitted_gate,
    fit_distances,
    judge,
    wilson_interval,
)
from service.training.layer_gate import combined, cross_fitted, log_scale

FloatArray = npt.NDArray[np.float64]


def gate_distances(
    oof: dict[str, npt.NDArray[Any]], tag: str
) -> tuple[FloatArray, FloatArray, FloatArray, dict[str, Any]]:
    """(skin OOF scores, negatives' scores (folds × images), the skin scores on the pooled
    scale that the shipped thresholds are fitted on, a description)."""
    folds = oof["folds"].astype(np.int64)
    if f"{tag}_layer_distances" in oof:
        skin = oof[f"{tag}_layer_distances"].astype(np.float64)
        cross, neg = cross_fitted(skin, folds, oof[f"{tag}_negative_layer_distances"])
        assert neg is not None
        scale = log_scale(skin)
        names = [str(n) for n in oof["layer_names"]]
        pairs = zip(names, scale.tolist(), strict=True)
        info = {"distance": "layered", "layer_log_scale": dict(pairs)}
        return cross, neg, combined(skin, scale), info
    last = oof[f"{tag}_feature_distance"].astype(np.float64)
    neg_last = oof[f"{tag}_negative_distances"].astype(np.float64)
    return last, neg_last, last, {"distance": "last_layer"}


def gate_section(
    oof: dict[str, npt.NDArray[Any]],
    tag: str,
    measurements: Sequence[dict[str, float]],
    negatives: dict[str, tuple[str, dict[str, float]]],
    percentiles: GatePercentiles,
) -> tuple[list[str], dict[str, Any]]:
    """Skin photos' verdicts and the report's `gate` (`negatives`: name → (kind, measurements),
    in the OOF file's order)."""
    labels, folds = oof["labels"].astype(np.int64), oof["folds"].astype(np.int64)
    groups = [str(g) for g in oof["groups"]]
    quality = QualityThresholds()
    skin, neg, on_all, info = gate_distances(oof, tag)
    verdicts, gate = cross_fitted_gate(
        measurements, skin, labels, groups, folds, percentiles, quality, CLASSES
    )
    gate.update(info)
    gate["fitted_on_all"] = fit_distances(on_all, percentiles).__dict__
    per_fold = [fit_distances(skin[folds != f], percentiles) for f in range(len(neg))]
    per_negative: dict[str, dict[str, Any]] = {}
    for j, (name, (kind, m)) in enumerate(negatives.items()):
        outcomes = [
            judge([m], neg[f, j : j + 1], fitted, quality)[0] for f, fitted in enumerate(per_fold)
        ]
        per_negative[name] = {
            "kind": kind,
            "verdicts": outcomes,
            "distance_median": round(float(np.median(neg[:, j])), 3),
        }
    gate["negatives"] = per_negative
    gate["negatives_accepted"] = sorted(
        n for n, v in per_negative.items() if "passed" in v["verdicts"]
    )
    gate["negative_false_acceptance"] = false_acceptance(per_negative)
    return verdicts, gate


def false_acceptance(per_negative: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Accepted judgements (a fold model passing a negative), overall and per kind."""
    judged = [v for p in per_negative.values() for v in p["verdicts"]]
    accepted = sum(v == "passed" for v in judged)
    kinds = sorted({p["kind"] for p in per_negative.values()})
    return {
        "judgements": len(judged),
        "accepted": accepted,
        "held_back_as_unusual": sum(v == "unusual" for v in judged),
        "rejected": sum(v == "rejected" for v in judged),
        "share_ci95": wilson_interval(accepted, len(judged)),
        "per_kind": {
            kind: wilson_interval(
                sum(
                    v == "passed"
                    for p in per_negative.values()
                    if p["kind"] == kind
                    for v in p["verdicts"]
                ),
                sum(len(p["verdicts"]) for p in per_negative.values() if p["kind"] == kind),
            )
            for kind in kinds
        },
    }
