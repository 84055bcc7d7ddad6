"""Fit the gate's OOD thresholds: batched model passes, score choice, percentile thresholds.

Also fits the feature-distance artefact (`models/<model>.ood.npz`) and its thresholds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.evaluation.dataset import list_labelled_images
from service.images import load_rgb
from service.pipeline.classifier import Classifier, FloatArray, OnnxClassifier
from service.pipeline.domain import CLASSES
from service.pipeline.feature_ood import fit_feature_distance
from service.pipeline.gate_config import FeatureThreshold, OodScore, OodThreshold
from service.pipeline.ood import ModelPass, forward

BATCH = 32


def passes(classifier: Classifier, paths: Sequence[Path]) -> ModelPass:
    """One batched model pass over image files."""
    parts = [
        forward(classifier, [load_rgb(p) for p in paths[i : i + BATCH]])
        for i in range(0, len(paths), BATCH)
    ]
    features = [p.features for p in parts if p.features is not None]
    return ModelPass(
        np.concatenate([p.probabilities for p in parts]),
        np.concatenate([p.energy for p in parts]),
        np.concatenate([p.max_logit for p in parts]),
        np.concatenate(features) if len(features) == len(parts) else None,
    )


def fit_artefact(source: OnnxClassifier, data: Path, models_dir: Path) -> tuple[str, str]:
    """Fit the feature distance on skin6 train features of `source`; (file name, sha256)."""
    train = list_labelled_images(data / "train", CLASSES)
    features = passes(source, [item.path for item in train]).features
    assert features is not None, "feature_source() returned a model without features"
    labels = np.array([item.label for item in train])
    blob = fit_feature_distance(features, labels).to_bytes()
    name = f"{source.card.name}.ood.npz"
    (models_dir / name).write_bytes(blob)
    return name, hashlib.sha256(blob).hexdigest()


def calibrate_features(
    classifier: Classifier,
    source: OnnxClassifier,
    artefact: tuple[str, str],
    distances: FloatArray,
    percentiles: tuple[float, float],
    fitted_on: str,
) -> FeatureThreshold:
    """Feature thresholds at upper percentiles of in-distribution distances."""
    return FeatureThreshold(
        threshold=round(float(np.percentile(distances, percentiles[0])), 4),
        soft_threshold=round(float(np.percentile(distances, percentiles[1])), 4),
        model_name=classifier.info.name,
        model_sha256=classifier.info.sha256,
        features_sha256=source.info.sha256,
        artefact=artefact[0],
        artefact_sha256=artefact[1],
        percentile=percentiles[0],
        soft_percentile=percentiles[1],
        fitted_on=fitted_on,
    )


def choose_score(train: ModelPass) -> OodScore:
    """Energy unless it is constant (a graph that ends in softmax), then max-logit."""
    return "energy" if float(np.std(train.energy)) > 1e-6 else "max_logit"


def calibrate(
    classifier: Classifier,
    fit: ModelPass,
    percentile: float,
    soft_percentile: float,
    fitted_on: str,
) -> OodThreshold:
    """Thresholds at the given percentiles of in-distribution scores."""
    kind = choose_score(fit)
    scores: FloatArray = fit.score(kind)
    return OodThreshold(
        score=kind,
        threshold=round(float(np.percentile(scores, percentile)), 5),
        soft_threshold=round(float(np.percentile(scores, soft_percentile)), 5),
        model_name=classifier.info.name,
        model_sha256=classifier.info.sha256,
        percentile=percentile,
        soft_percentile=soft_percentile,
        fitted_on=fitted_on,
    )
