"""The gate around classification: quality checks, one classifier pass, one verdict.

`rejected`: the image is unusable (a quality reason) or not a skin photo (`not_skin`: skin
colours, the logit OOD score and, for models with a features output, the feature distance).
`inconclusive`: a usable skin photo on which the model is unsure (`low_confidence`: calibrated
top probability under `inconclusive_below`; `ambiguous`: top-1 minus top-2 under
`inconclusive_margin`; `several_conditions`: its conformal prediction set holds more than one
class) or that is only marginally unfamiliar to it (`unusual_image`). `ok` otherwise. The
verdict itself is `pipeline.policy.verdict`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

from PIL import Image

from service.logging import get_logger
from service.pipeline.classifier import Classifier, classification_from
from service.pipeline.conformal import prediction_set
from service.pipeline.domain import Classification, GateOutcome
from service.pipeline.gate_config import (
    FeatureThreshold,
    GateConfig,
    OodThreshold,
    QualityThresholds,
)
from service.pipeline.layered_distance import DistanceScore, load_distance
from service.pipeline.ood import feature_source, forward
from service.pipeline.policy import confidence_reasons, verdict
from service.pipeline.quality import measure, quality_reasons
from service.pipeline.triage_config import TriageConfig

log = get_logger(__name__)


Unfamiliarity = Literal["clear", "marginal"] | None


def unfamiliarity(
    m: dict[str, float],
    score: float | None,
    q: QualityThresholds,
    ood: OodThreshold | None,
    distance: float | None = None,
    feature: FeatureThreshold | None = None,
) -> Unfamiliarity:
    """`clear` (reject as `not_skin`), `marginal` (`inconclusive`, `unusual_image`) or None.

    Clear: too few skin-toned pixels or noise-like, or unfamiliar to the model beyond its
    threshold, or beyond its soft threshold with few skin-toned pixels. Marginal: beyond the
    `unusual_threshold` only (or, with few skin-toned pixels, `unusual_few_skin_threshold`).
    Unfamiliar: a feature distance when the model has calibrated features (they supersede the
    logit score, which alone lets teeth and endoscopy photos through and, added on top, only
    rejects more real skin photos), else a logit score.
    """
    skin_fraction = m["skin_fraction"]
    if skin_fraction < q.min_skin_fraction or m["noise_ratio"] > q.max_noise_ratio:
        return "clear"
    few_skin = skin_fraction < q.soft_skin_fraction
    if feature is not None and distance is not None:
        if not math.isfinite(distance):  # a broken score never lets a photo through
            return "clear"
        if distance > feature.threshold or (few_skin and distance > feature.soft_threshold):
            return "clear"
        bars = (feature.unusual_threshold, feature.unusual_few_skin_threshold if few_skin else None)
        return "marginal" if any(b is not None and distance > b for b in bars) else None
    if ood is None or score is None:
        return None
    if score < ood.threshold or (few_skin and score < ood.soft_threshold):
        return "clear"
    unusual = ood.unusual_threshold
    return "marginal" if unusual is not None and score < unusual else None


def is_not_skin(
    m: dict[str, float],
    score: float | None,
    q: QualityThresholds,
    ood: OodThreshold | None,
    distance: float | None = None,
    feature: FeatureThreshold | None = None,
) -> bool:
    """`unfamiliarity(...) == "clear"`: the image is rejected as `not_skin`."""
    return unfamiliarity(m, score, q, ood, distance, feature) == "clear"


def load_feature_gate(
    config: GateConfig, classifier: Classifier
) -> tuple[FeatureThreshold, DistanceScore] | None:
    """The feature threshold and its artefact for this classifier, if calibrated and intact."""
    entry = config.features_for(classifier.info)
    source = feature_source(classifier)
    if entry is None or source is None or config.directory is None:
        return None
    if source.info.sha256 != entry.features_sha256:
        log.warning("gate.features_stale", model=source.info.name)
        return None
    path = config.directory / entry.artefact
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry.artefact_sha256:
        log.warning("gate.features_artefact_mismatch", path=str(path))
        return None
    return entry, load_distance(path)


class Screener:
    """Runs the gate and the classifier once per image. Thread-safe (no mutable state)."""

    def __init__(
        self,
        classifier: Classifier,
        config: GateConfig,
        inconclusive_below: float,
        inconclusive_margin: float,
        malignancy_threshold: float | None = None,
        conformal_threshold: float | Literal["fitted"] | None = "fitted",
    ) -> None:
        self.classifier = classifier
        triage = TriageConfig.load(config.directory) if config.directory else TriageConfig()
        #: P(Carcinoma) at or above → `urgent` (`pipeline.policy.referral`); fitted per weights.
        if malignancy_threshold is None:
            malignancy_threshold = triage.threshold_for(classifier.info)
        self.malignancy_threshold = malignancy_threshold
        #: q̂ of the conformal prediction sets (`pipeline.conformal`); None: no sets.
        self.conformal_threshold = (
            triage.conformal_for(classifier.info)
            if conformal_threshold == "fitted"
            else conformal_threshold
        )
        self.config = config
        self.inconclusive_below = inconclusive_below
        self.inconclusive_margin = inconclusive_margin
        self.ood = config.ood_for(classifier.info)
        if self.ood is None:
            log.warning("gate.ood_uncalibrated", model=classifier.info.name)
        self.features = load_feature_gate(config, classifier)
        if self.features is None and feature_source(classifier) is not None:
            log.warning("gate.features_uncalibrated", model=classifier.info.name)

    def screen(self, image: Image.Image) -> tuple[GateOutcome, Classification]:
        """Gate outcome and classification of one RGB image."""
        return self.screen_batch([image])[0]

    def screen_batch(
        self, images: Sequence[Image.Image]
    ) -> list[tuple[GateOutcome, Classification]]:
        """`screen` for many images with one batched classifier pass."""
        if not images:
            return []
        started = time.perf_counter()
        model_pass = forward(self.classifier, images)
        probabilities = model_pass.probabilities
        scores = model_pass.score(self.ood.score) if self.ood else None
        feature, distances = None, None
        if self.features is not None and model_pass.features is not None:
            feature, distances = self.features[0], self.features[1].score(model_pass.features)
        results = []
        for index, image in enumerate(images):
            m = measure(image)
            score = float(scores[index]) if scores is not None else None
            if score is not None:
                m["ood_score"] = score
            distance = float(distances[index]) if distances is not None else None
            if distance is not None:
                m["feature_distance"] = distance
            unfamiliar = unfamiliarity(m, score, self.config.quality, self.ood, distance, feature)
            classification = classification_from(probabilities[index], self.classifier)
            classification = replace(
                classification,
                prediction_set=prediction_set(
                    classification.probabilities, self.conformal_threshold
                ),
            )
            status, reasons = verdict(
                quality_reasons(m, self.config.quality),
                unfamiliar == "clear",
                confidence_reasons(
                    probabilities[index],
                    self.inconclusive_below,
                    self.inconclusive_margin,
                    classification.prediction_set,
                ),
                unusual=unfamiliar == "marginal",
            )
            results.append(
                (GateOutcome(status=status, reasons=reasons, measurements=m), classification)
            )
            log.info("gate.screened", status=status, reasons=list(reasons))
        log.debug("gate.batch", images=len(images), ms=round(1e3 * (time.perf_counter() - started)))
        return results
