"""Out-of-distribution scores from a classifier's logits, and one-pass logits + probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.pipeline.classifier import (
    Classifier,
    EnsembleClassifier,
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
    T = 1), averaged over an ensemble's members; `max_logit` is the largest logit (Hendrycks et
    al. 2022). Both grow with familiarity. For a graph that outputs probabilities the logits are
    log-probabilities: its energy is constant 0 and its max_logit is log(top probability).
    """

    probabilities: FloatArray
    energy: FloatArray
    max_logit: FloatArray

    def score(self, kind: OodScore) -> FloatArray:
        """The in-distribution score of `kind` (larger = more like the training images)."""
        return self.energy if kind == "energy" else self.max_logit


def forward(classifier: Classifier, images: Sequence[Image.Image]) -> ModelPass:
    """Probabilities and OOD scores in one pass of each model."""
    if isinstance(classifier, EnsembleClassifier):
        parts = [forward(member, images) for member in classifier.members]
        log_mean = np.log(np.clip(np.mean([p.probabilities for p in parts], axis=0), 1e-12, 1))
        energy: FloatArray = np.mean([p.energy for p in parts], axis=0)
        # Same as EnsembleClassifier.probabilities, without a second pass of each member.
        probabilities = softmax(log_mean, classifier.temperature)
        return ModelPass(probabilities, energy, log_mean.max(axis=-1))
    logits = classifier.logits(images)
    if isinstance(classifier, OnnxClassifier):
        probabilities = softmax(logits, classifier.card.temperature)
    else:
        probabilities = classifier.probabilities(images)
    return ModelPass(probabilities, logsumexp(logits), logits.max(axis=-1))
