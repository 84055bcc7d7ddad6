"""Thresholds of the quality / out-of-distribution gate, read from `models/gate.json`.

Quality thresholds do not depend on the model. The out-of-distribution (OOD) thresholds do,
so they are kept per backend and tied to the weights' sha256: a retrained model does not reuse a
stale threshold. Logit scores are under `ood`; feature-space distances (a fitted artefact in
`models/`, see `feature_ood`) under `features`, for backends whose graph outputs features.
`python -m service.training.gate_calibration` writes the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from service.logging import get_logger
from service.pipeline.domain import ModelInfo

GATE_FILE = "gate.json"
OodScore = Literal["energy", "max_logit"]

log = get_logger(__name__)


@dataclass(frozen=True)
class QualityThresholds:
    """Model-independent limits; each one maps to one reason code.

    These are the embedded defaults, used when `models/gate.json` is missing.
    """

    #: skin6 has photos down to 58 px on the short side.
    min_side: int = 56
    #: Under-exposed: 95% of pixels darker than this. The darkest Monk skin swatch has Y = 37,
    #: so correctly exposed dark skin stays above it (skin6 train minimum: 97).
    min_p95_luma: float = 32.0
    #: Over-exposed: mean luma above this (train max 210) or this share of pixels clipped
    #: (all channels >= 250; train max 0.28).
    max_mean_luma: float = 235.0
    max_clipped_fraction: float = 0.4
    #: Variance of the Laplacian at 128 px (train min 7.2; a Gaussian blur of 1/50 of the side
    #: gives at most 6.6).
    min_sharpness: float = 7.0
    #: Hasler-Süsstrunk colourfulness (0 for grey; val min 10).
    min_colourfulness: float = 6.0
    #: Flat images: luma entropy in bits (val min 4.4) or luma standard deviation (val min 5.5).
    min_entropy: float = 3.0
    min_luma_std: float = 3.0
    #: `not_skin` when fewer pixels than this are skin-toned, whatever the classifier says
    #: (skin6 train: 0.5th percentile 0.32; a skin close-up is mostly skin).
    min_skin_fraction: float = 0.25
    #: `not_skin` above this Laplacian variance / luma variance: pixel noise, not a photo
    #: (natural images have little energy at the pixel scale: skin6 max 3.0; white noise ~12).
    max_noise_ratio: float = 6.0
    #: ...or when fewer than this are skin-toned (train: ~2nd percentile) and the classifier's
    #: OOD score is under its soft threshold.
    soft_skin_fraction: float = 0.45


@dataclass(frozen=True)
class OodThreshold:
    """In-distribution score limit of one backend: `score` under `threshold` means OOD.

    `energy` is the negative free energy logsumexp(logits) (Liu et al. 2020); `max_logit` is the
    largest logit (Hendrycks et al. 2022). Both are larger for familiar images.
    """

    score: OodScore
    #: Below this the image is `not_skin` whatever its colours.
    threshold: float
    #: Below this the image is `not_skin` when few of its pixels are skin-toned.
    soft_threshold: float
    model_name: str
    model_sha256: str
    #: Percentiles of the in-distribution scores the two thresholds were set at, and which
    #: skin6 split those scores came from.
    percentile: float
    soft_percentile: float
    fitted_on: str = "val"
    #: Below this (but not rejected) the image is `inconclusive` with `unusual_image`.
    unusual_threshold: float | None = None


@dataclass(frozen=True)
class FeatureThreshold:
    """Feature-distance limit of one backend: a distance above `threshold` means OOD.

    The distance (Mahalanobis to the nearest class, `feature_ood`) uses the fitted artefact
    `artefact` in the models directory, computed on the features of the model whose ONNX
    sha256 is `features_sha256` (for the ensemble: its EfficientNet member).
    """

    #: Above this the image is `not_skin` whatever its colours.
    threshold: float
    #: Above this the image is `not_skin` when few of its pixels are skin-toned.
    soft_threshold: float
    model_name: str
    model_sha256: str
    features_sha256: str
    artefact: str
    artefact_sha256: str
    #: Percentiles of the in-distribution distances the two thresholds were set at.
    percentile: float
    soft_percentile: float
    #: `mahalanobis` (the pooled last layer, `feature_ood`; a squared distance) or
    #: `layered-mahalanobis` (`layered_distance`: mean z-scored log distance over layers).
    method: str = "mahalanobis"
    fitted_on: str = "val"
    #: Above this (but not rejected) the image is `inconclusive` with `unusual_image`.
    unusual_threshold: float | None = None
    #: The same for an image with few skin-toned pixels (a lower bar: such photos used to be
    #: rejected from here, so they are at least held back).
    unusual_few_skin_threshold: float | None = None


@dataclass(frozen=True)
class GateConfig:
    """All gate thresholds; `ood` and `features` are keyed by backend (yolo, effnet, ensemble).

    `directory` is where the file was read from (the feature artefacts live there).
    """

    quality: QualityThresholds = field(default_factory=QualityThresholds)
    ood: dict[str, OodThreshold] = field(default_factory=dict)
    features: dict[str, FeatureThreshold] = field(default_factory=dict)
    directory: Path | None = field(default=None, compare=False)

    def ood_for(self, model: ModelInfo) -> OodThreshold | None:
        """The OOD threshold calibrated for exactly these weights, if any."""
        for entry in self.ood.values():
            if entry.model_sha256 == model.sha256:
                return entry
        return None

    def features_for(self, model: ModelInfo) -> FeatureThreshold | None:
        """The feature-distance threshold calibrated for exactly these weights, if any."""
        for entry in self.features.values():
            if entry.model_sha256 == model.sha256:
                return entry
        return None

    def own_features(self, sha256: str) -> FeatureThreshold | None:
        """The feature entry a model measures with its own features (not borrowed ones)."""
        for entry in self.features.values():
            if entry.model_sha256 == sha256 == entry.features_sha256:
                return entry
        return None

    def as_json(self) -> dict[str, Any]:
        """JSON document form (the inverse of `from_json`)."""
        return {
            "quality": asdict(self.quality),
            "ood": {name: asdict(entry) for name, entry in self.ood.items()},
            "features": {name: asdict(entry) for name, entry in self.features.items()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], directory: Path | None = None) -> GateConfig:
        """Parse a document; unknown quality keys are ignored, missing ones take defaults."""
        known = {f.name for f in fields(QualityThresholds)}
        quality = QualityThresholds(
            **{k: v for k, v in doc.get("quality", {}).items() if k in known}
        )
        ood = {name: OodThreshold(**entry) for name, entry in doc.get("ood", {}).items()}
        features = {
            name: FeatureThreshold(**entry) for name, entry in doc.get("features", {}).items()
        }
        return cls(quality=quality, ood=ood, features=features, directory=directory)

    @classmethod
    def load(cls, models_dir: Path) -> GateConfig:
        """`models_dir/gate.json`, or the embedded defaults (no OOD thresholds) without it."""
        path = models_dir / GATE_FILE
        if not path.is_file():
            log.warning("gate.config_missing", path=str(path))
            return cls(directory=models_dir)
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")), models_dir)

    def save(self, models_dir: Path) -> Path:
        """Write `models_dir/gate.json`."""
        path = models_dir / GATE_FILE
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        return path
