"""Gate v2 thresholds fitted on out-of-fold feature distances, judged by cross-fitting.

Per photo: the quality measurements (`pipeline.quality.measure`) and the OOF feature distance
(Mahalanobis to the nearest class, with class means from the fold's own training photos). The
gate's feature thresholds are upper percentiles of the skin photos' OOF distances:
`threshold` (reject whatever the colours), `soft_threshold` (reject when few pixels are
skin-toned) and `unusual_threshold` (`inconclusive`, reason `unusual_image`). The rejection
share reported is cross-fitted: each fold is judged with percentiles taken on the other folds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.evaluation.cv_metrics import group_bootstrap
from service.pipeline.gate_config import FeatureThreshold, QualityThresholds
from service.pipeline.quality import quality_reasons
from service.pipeline.screening import unfamiliarity

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GatePercentiles:
    """Upper percentiles of in-distribution OOF distances for the four feature thresholds.

    `unusual_few_skin` is where v1 rejected photos with few skin-toned pixels (its soft
    percentile, 90), so none of those photos becomes `ok` in v2: they are held back instead.
    """

    reject: float = 99.8
    soft: float = 99.0
    unusual: float = 97.5
    unusual_few_skin: float = 90.0

    def __post_init__(self) -> None:
        if not (self.reject >= self.soft >= self.unusual_few_skin and self.reject >= self.unusual):
            raise ValueError(f"gate percentiles out of order: {self}")


@dataclass(frozen=True)
class FittedDistances:
    reject: float
    soft: float
    unusual: float
    unusual_few_skin: float


def fit_distances(distances: FloatArray, p: GatePercentiles) -> FittedDistances:
    q = np.percentile(distances, [p.reject, p.soft, p.unusual, p.unusual_few_skin])
    return FittedDistances(float(q[0]), float(q[1]), float(q[2]), float(q[3]))


def _entry(fitted: FittedDistances) -> FeatureThreshold:
    return FeatureThreshold(
        threshold=fitted.reject,
        soft_threshold=fitted.soft,
        model_name="cv",
        model_sha256="",
        features_sha256="",
        artefact="",
        artefact_sha256="",
        percentile=0.0,
        soft_percentile=0.0,
        unusual_threshold=fitted.unusual,
        unusual_few_skin_threshold=fitted.unusual_few_skin,
    )


def judge(
    measurements: Sequence[dict[str, float]],
    distances: FloatArray,
    fitted: FittedDistances,
    quality: QualityThresholds,
) -> list[str]:
    """Per image: `rejected` / `unusual` / `passed` (confidence reasons left aside)."""
    entry = _entry(fitted)
    verdicts = []
    for m, d in zip(measurements, distances, strict=True):
        level = unfamiliarity(m, None, quality, None, float(d), entry)
        if quality_reasons(m, quality) or level == "clear":
            verdicts.append("rejected")
        else:
            verdicts.append("unusual" if level == "marginal" else "passed")
    return verdicts


def _share(flags: npt.NDArray[np.bool_]) -> Callable[[npt.NDArray[np.int64]], float]:
    return lambda i: float(flags[i].mean())


def wilson_interval(hits: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a proportion (sound at 0 or n hits, unlike Wald's)."""
    if n == 0:
        return [0.0, 1.0]
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def cross_fitted_gate(
    measurements: Sequence[dict[str, float]],
    distances: FloatArray,
    labels: npt.NDArray[np.int64],
    groups: Sequence[str],
    folds: npt.NDArray[np.int64],
    percentiles: GatePercentiles,
    quality: QualityThresholds,
    classes: Sequence[str],
) -> tuple[list[str], dict[str, Any]]:
    """Verdict per photo with each fold's thresholds fitted on the other folds; the shares."""
    verdicts = [""] * len(distances)
    for fold in range(int(folds.max()) + 1):
        held = [int(i) for i in np.flatnonzero(folds == fold)]
        fitted = fit_distances(distances[folds != fold], percentiles)
        for i, v in zip(
            held,
            judge([measurements[i] for i in held], distances[held], fitted, quality),
            strict=True,
        ):
            verdicts[i] = v
    rejected = np.asarray([v == "rejected" for v in verdicts])
    unusual = np.asarray([v == "unusual" for v in verdicts])
    reasons: dict[str, int] = {}
    for i in (int(j) for j in np.flatnonzero(rejected)):
        for r in quality_reasons(measurements[i], quality) or ("not_skin",):
            reasons[r] = reasons.get(r, 0) + 1
    return verdicts, {
        "percentiles": percentiles.__dict__,
        "skin_rejected": round(float(rejected.mean()), 4),
        "skin_rejected_ci95": group_bootstrap(groups, lambda i: float(rejected[i].mean())),
        "skin_unusual": round(float(unusual.mean()), 4),
        "rejection_reasons": reasons,
        "skin_rejected_per_class": {
            name: round(float(rejected[labels == c].mean()), 4) for c, name in enumerate(classes)
        },
        "skin_rejected_per_class_ci95": {
            name: group_bootstrap(
                [g for g, lbl in zip(groups, labels, strict=True) if lbl == c],
                _share(rejected[labels == c]),
                draws=500,
            )
            for c, name in enumerate(classes)
        },
        "skin_unusual_per_class": {
            name: round(float(unusual[labels == c].mean()), 4) for c, name in enumerate(classes)
        },
    }
