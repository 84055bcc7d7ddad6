"""Judge calibrated gate thresholds on in-distribution images and on negatives.

In-distribution: the rejections with their reasons, plain or cross-fitted by group halves.
Negatives: the verdict on each, and how many were falsely accepted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from service.evaluation.negatives import dicom_negatives, generated_negatives
from service.pipeline.classifier import FloatArray
from service.pipeline.gate_config import FeatureThreshold, OodThreshold, QualityThresholds
from service.pipeline.policy import verdict
from service.pipeline.quality import quality_reasons
from service.pipeline.screening import Screener, is_not_skin


def rejections(
    measurements: Sequence[dict[str, float]],
    scores: FloatArray,
    quality: QualityThresholds,
    ood: OodThreshold,
    distances: FloatArray | None = None,
    feature: FeatureThreshold | None = None,
) -> list[tuple[str, ...]]:
    """The rejection reasons (empty when not rejected) of each in-distribution image."""
    reasons = []
    for index, m in enumerate(measurements):
        distance = None if distances is None else float(distances[index])
        not_skin = is_not_skin(m, float(scores[index]), quality, ood, distance, feature)
        reasons.append(verdict(quality_reasons(m, quality), not_skin, ())[1])
    return reasons


def cross_fitted_rejections(
    measurements: Sequence[dict[str, float]],
    scores: FloatArray,
    folds: Sequence[int],
    entry: OodThreshold,
    quality: QualityThresholds,
    distances: FloatArray | None = None,
    feature: FeatureThreshold | None = None,
) -> list[tuple[str, ...]]:
    """Each half of val judged with OOD thresholds fitted on the other half."""
    folds_array = np.asarray(folds)
    reasons: list[tuple[str, ...]] = [()] * len(measurements)
    for fold in (0, 1):
        fit = folds_array != fold
        test = [int(i) for i in np.flatnonzero(folds_array == fold)]
        other = replace(
            entry,
            threshold=float(np.percentile(scores[fit], entry.percentile)),
            soft_threshold=float(np.percentile(scores[fit], entry.soft_percentile)),
        )
        other_feature, test_distances = None, None
        if feature is not None and distances is not None:
            other_feature = replace(
                feature,
                threshold=float(np.percentile(distances[fit], feature.percentile)),
                soft_threshold=float(np.percentile(distances[fit], feature.soft_percentile)),
            )
            test_distances = distances[test]
        judged = rejections(
            [measurements[i] for i in test],
            scores[test],
            quality,
            other,
            test_distances,
            other_feature,
        )
        for index, result in zip(test, judged, strict=True):
            reasons[index] = result
    return reasons


def print_rejections(label: str, reasons: Sequence[tuple[str, ...]]) -> None:
    """One line: how many were rejected and why."""
    rejected = [r for r in reasons if r]
    counts = Counter(code for r in rejected for code in r)
    rate = 100 * len(rejected) / len(reasons)
    print(f"  {label}: {len(rejected)}/{len(reasons)} rejected = {rate:.2f}% {dict(counts)}")


def report_negatives(
    screener: Screener, skin: Image.Image, shared: Path, val_distances: FloatArray | None
) -> int:
    """Print the verdict on every negative; return how many were not rejected."""
    negatives = [*dicom_negatives(shared / "dicom"), *generated_negatives(skin).items()]
    accepted = 0
    for name, image in negatives:
        gate, classification = screener.screen(image)
        accepted += gate.status != "rejected"
        score = gate.measurements.get("ood_score", float("nan"))
        distance = gate.measurements.get("feature_distance", float("nan"))
        rank = np.nan if val_distances is None else 100 * np.mean(val_distances < distance)
        print(
            f"  {name:24s} {gate.status:12s} {','.join(gate.reasons):30s} "
            f"skin={gate.measurements['skin_fraction']:.2f} ood={score:.3f} "
            f"dist={distance:.0f} (val p{rank:.1f}) "
            f"top={classification.label}:{classification.confidence:.2f}"
        )
    print(f"  false acceptances: {accepted}/{len(negatives)}")
    return accepted
