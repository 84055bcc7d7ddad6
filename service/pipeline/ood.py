"""One classifier pass: probabilities, logit OOD scores and (if the graph has them) features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from service.pipeline.classifier import (
    Classifier,
    EnsembleClassifier,
    FeatureArray,
    FeatureCompanion,
    FloatArray,
    OnnxClassifier,
    softmax,
)
from service.pipeline.gate_config import OodScore


def logsumexp(logits: FloatArray) -> FloatArray:
    """Row-wise log(sum(exp(logits))), numerically stable."""
    top = logits.max(axis=-1)
    result: FloatArray = top + np.log(np.exp(logits - top[..., None]).sum(axis=-1))
    return result


@dataclass(frozen=True)
class ModelPass:
    """One classifier pass: calibrated probabilities and both OOD scores, one row per image.

    `energy` is the negative free energy logsumexp(logits) (Liu et al. 2020; energy = -score at
    T = 1), an ensemble's weighted mean over its members; `max_logit` is the largest logit
    (Hendrycks et al. 2022). Both grow with familiarity. For a graph that outputs probabilities
    the logits are log-probabilities: its energy is constant 0 and its max_logit is log(top
    probability).
    `features` are the gate features of `feature_source` (the pooled penultimate layer, or for a
    v2 EfficientNet that layer and five tapped blocks), None without one.
    """

    probabilities: FloatArray
    energy: FloatArray
    max_logit: FloatArray
    features: FeatureArray | None = None

    def score(self, kind: OodScore) -> FloatArray:
        """The in-distribution score of `kind` (larger = more like the training images)."""
        return self.energy if kind == "energy" else self.max_logit


def feature_source(classifier: Classifier) -> OnnxClassifier | None:
    """The model whose features the gate uses: itself, or an ensemble's first such member."""
    if isinstance(classifier, OnnxClassifier):
        return classifier if classifier.has_features else None
    if isinstance(classifier, FeatureCompanion):
        return feature_source(classifier.companion)
    if isinstance(classifier, EnsembleClassifier):
        sources = (feature_source(member) for member in classifier.members)
        return next((source for source in sources if source is not None), None)
    return None


def forward(classifier: Classifier, images: Sequence[Image.Image]) -> ModelPass:
    """Probabilities, OOD scores and features in one pass of each model."""
    if isinstance(classifier, FeatureCompanion):
        own = forward(classifier.classifier, images)
        return replace(own, features=classifier.companion.features(images))
    if isinstance(classifier, EnsembleClassifier):
        parts = [forward(member, images) for member in classifier.members]
        # Same (weighted) mean as EnsembleClassifier.logits, without a second pass of each member.
        log_mean = np.log(np.clip(classifier.mix([p.probabilities for p in parts]), 1e-12, 1))
        energy = classifier.mix([p.energy for p in parts])
        probabilities = softmax(log_mean, classifier.temperature)
        features = next((p.features for p in parts if p.features is not None), None)
        return ModelPass(probabilities, energy, log_mean.max(axis=-1), features)
    if isinstance(classifier, OnnxClassifier):
        logits, features = classifier.forward(images)
        probabilities = softmax(logits, classifier.card.temperature)
        return ModelPass(probabilities, logsumexp(logits), logits.max(axis=-1), features)
    logits = classifier.logits(images)
    return ModelPass(
        probabilities=classifier.probabilities(images),
        energy=logsumexp(logits),
        max_logit=logits.max(axis=-1),
    )
