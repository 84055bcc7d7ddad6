"""Classifier adapters: ONNX models described by a model card, and their ensemble."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from service.pipeline.batching import SessionBatcher
from service.pipeline.domain import Classification, ModelInfo
from service.pipeline.model_card import ModelCard
from service.pipeline.preprocess import classify_tensor

FloatArray = npt.NDArray[np.float64]
FeatureArray = npt.NDArray[np.float32]
FEATURES_OUTPUT = "features"


class ModelIntegrityError(RuntimeError):
    """The weights on disk do not match the sha256 in their model card."""


class Classifier(Protocol):
    """Anything that turns RGB images into probabilities over `classes`."""

    info: ModelInfo
    classes: tuple[str, ...]

    def logits(self, images: Sequence[Image.Image]) -> FloatArray:
        """Uncalibrated logits (or log-probabilities), shape (N, len(classes))."""
        ...

    def probabilities(self, images: Sequence[Image.Image]) -> FloatArray:
        """Calibrated probabilities, shape (N, len(classes))."""
        ...


def softmax(logits: FloatArray, temperature: float = 1.0) -> FloatArray:
    """Numerically stable softmax over the last axis."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    result: FloatArray = exp / exp.sum(axis=-1, keepdims=True)
    return result


def classification_from(probs: npt.NDArray[np.floating], classifier: Classifier) -> Classification:
    """Wrap one row of probabilities as a domain Classification."""
    return Classification(
        probabilities={c: float(p) for c, p in zip(classifier.classes, probs, strict=True)},
        model=classifier.info,
    )


def classify(classifier: Classifier, image: Image.Image) -> Classification:
    """Classify one image with any backend."""
    return classification_from(classifier.probabilities([image])[0], classifier)


class OnnxClassifier:
    """An exported model run by onnxruntime; loads once, verifies its sha256."""

    def __init__(self, card: ModelCard, threads: int = 2) -> None:
        self.card = card
        self.classes = card.classes
        self.info = card.info
        weights = card.onnx_path.read_bytes()
        actual = hashlib.sha256(weights).hexdigest()
        if actual != card.onnx_sha256:
            raise ModelIntegrityError(f"{card.onnx_path.name}: sha256 {actual} != card")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            weights, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._fixed_batch = isinstance(self._session.get_inputs()[0].shape[0], int)
        self._batcher: SessionBatcher | None = None
        graph_outputs = [o.name for o in self._session.get_outputs()]
        self.has_features = FEATURES_OUTPUT in card.outputs
        if self.has_features and FEATURES_OUTPUT not in graph_outputs:
            raise ModelIntegrityError(f"{card.onnx_path.name}: no `{FEATURES_OUTPUT}` output")
        self._outputs = [graph_outputs[0], *([FEATURES_OUTPUT] if self.has_features else [])]

    @classmethod
    def from_card_path(cls, path: Path, threads: int = 2) -> OnnxClassifier:
        """Load the model described by `models/<name>.json`."""
        return cls(ModelCard.load(path), threads=threads)

    def preprocess(self, image: Image.Image) -> npt.NDArray[np.float32]:
        """The exact inference transform of this model."""
        return classify_tensor(image, self.card.imgsz, self.card.mean, self.card.std)

    def forward(self, images: Sequence[Image.Image]) -> tuple[FloatArray, FeatureArray | None]:
        """Logits (as `logits` returns them) and, if the card lists them, the gate features.

        One session run gives both; features are None for a graph without that output.
        """
        batch = np.stack([self.preprocess(image) for image in images])
        if self._fixed_batch:
            rows = [self._session.run(self._outputs, {self._input: row[None]}) for row in batch]
            raw = [np.concatenate(parts, axis=0) for parts in zip(*rows, strict=True)]
        elif self._batcher is not None:
            raw = self._batcher.run(batch)
        else:
            raw = self._session.run(self._outputs, {self._input: batch})
        values: FloatArray = np.asarray(raw[0], dtype=np.float64)
        if self.card.output == "probabilities":
            values = np.log(np.clip(values, 1e-12, 1.0))
        features = np.asarray(raw[1], dtype=np.float32) if self.has_features else None
        return values, features

    def share_passes(self, max_rows: int) -> None:
        """Let concurrent calls share one session run (`SessionBatcher`), up to `max_rows`."""
        if not self._fixed_batch and max_rows > 1:
            self._batcher = SessionBatcher(
                lambda rows: list(self._session.run(self._outputs, {self._input: rows})), max_rows
            )

    def logits(self, images: Sequence[Image.Image]) -> FloatArray:
        return self.forward(images)[0]

    def features(self, images: Sequence[Image.Image]) -> FeatureArray:
        """Pooled penultimate features, shape (N, D); only for a card listing `features`."""
        features = self.forward(images)[1]
        if features is None:
            raise ValueError(f"{self.card.name} has no `{FEATURES_OUTPUT}` output")
        return features

    def raw_probabilities(self, images: Sequence[Image.Image]) -> FloatArray:
        """Uncalibrated probabilities: exactly what the exported graph computes."""
        return softmax(self.logits(images))

    def probabilities(self, images: Sequence[Image.Image]) -> FloatArray:
        return softmax(self.logits(images), self.card.temperature)


def ensemble_info(members: Sequence[ModelInfo]) -> ModelInfo:
    """The ensemble's identity: its members' names joined, and the sha256 of their sha256s in
    order — the key of its gate and triage entries."""
    joined = "+".join(m.name for m in members)
    digest = hashlib.sha256("".join(m.sha256 for m in members).encode()).hexdigest()
    return ModelInfo(name=f"ensemble({joined})", version="1", sha256=digest)


class EnsembleClassifier:
    """Weighted mean (plain mean without `weights`) of the members' calibrated probabilities,
    re-calibrated by one ensemble temperature.

    Averaging a strong and a weak member flattens the distribution (under-confidence); the
    ensemble card's temperature sharpens it back. Weights fitted on out-of-fold predictions
    come from `evaluation.ensemble_cv`.
    """

    def __init__(
        self,
        members: Sequence[Classifier],
        temperature: float = 1.0,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        classes = members[0].classes
        if any(m.classes != classes for m in members):
            raise ValueError("ensemble members disagree on classes")
        self.members = tuple(members)
        self.classes = classes
        self.temperature = temperature
        if weights is None:
            weights = [1.0] * len(members)
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"ensemble weights {list(weights)} do not fit {len(members)} members")
        self.weights = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.info = ensemble_info([m.info for m in members])

    def mix(self, member_rows: Sequence[FloatArray]) -> FloatArray:
        """The weighted mean of one row array per member (probabilities, energies)."""
        mixed: FloatArray = np.tensordot(self.weights, np.stack(member_rows), axes=1)
        return mixed

    def logits(self, images: Sequence[Image.Image]) -> FloatArray:
        """Log of the members' (weighted) mean calibrated probability (before the ensemble
        temperature)."""
        mean = self.mix([m.probabilities(images) for m in self.members])
        log_mean: FloatArray = np.log(np.clip(mean, 1e-12, 1.0))
        return log_mean

    def probabilities(self, images: Sequence[Image.Image]) -> FloatArray:
        return softmax(self.logits(images), self.temperature)


class FeatureCompanion:
    """A classifier whose out-of-distribution features come from a companion model.

    YOLOv8 trained from scratch has no features that tell a photo of teeth from skin; the
    ImageNet-pretrained EfficientNet has. The yolo backend therefore classifies with YOLO and
    lets the gate measure the photo with EfficientNet's features (one extra pass, ~6 ms).
    """

    def __init__(self, classifier: OnnxClassifier, companion: OnnxClassifier) -> None:
        if not companion.has_features:
            raise ValueError(f"{companion.info.name} has no features output")
        self.classifier = classifier
        self.companion = companion
        self.info = classifier.info
        self.classes = classifier.classes

    def logits(self, images: Sequence[Image.Image]) -> FloatArray:
        return self.classifier.logits(images)

    def probabilities(self, images: Sequence[Image.Image]) -> FloatArray:
        return self.classifier.probabilities(images)


def onnx_models(classifier: Classifier) -> list[OnnxClassifier]:
    """The ONNX models behind a backend (an ensemble's members, a feature companion)."""
    if isinstance(classifier, OnnxClassifier):
        return [classifier]
    if isinstance(classifier, EnsembleClassifier):
        return [m for member in classifier.members for m in onnx_models(member)]
    if isinstance(classifier, FeatureCompanion):
        return [classifier.classifier, classifier.companion]
    return []
