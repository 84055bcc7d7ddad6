"""Feature distance over several layers: one Mahalanobis distance per layer, combined.

The model's `features` output is then `[pooled last layer | tapped blocks' channel means and
standard deviations]` (`training.layer_taps`); `parts` name the column range of each layer.
Per layer the distance is `feature_ood.FeatureDistance` (nearest class mean, shared whitened
covariance). The layers' distances live on different scales, so each is made a z-score of its
log against skin photos that the model never trained on (out-of-fold, `log_mean`/`log_std`),
and the image's score is the mean z-score over layers. Measured out of fold (5-fold CV of
EfficientNet-Lite0, `training.cv_layers`), the mean separates the non-skin negatives best: with
the same percentile thresholds it rejects as few skin photos as the last layer alone (0.64 %)
and no fold model accepts any negative, where the last layer alone let teeth, endoscopy and a
photo of two people through and the largest z-score still let the people through.

Both artefact kinds load through `load_distance`; the gate only calls `score`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.pipeline.feature_ood import FeatureDistance, FloatArray

#: Added before the log so that a zero distance stays finite.
LOG_EPSILON = 1e-9


class DistanceScore(Protocol):
    """What the gate needs of a fitted distance artefact."""

    def score(self, features: npt.NDArray[np.floating]) -> FloatArray: ...


@dataclass(frozen=True)
class LayerPart:
    """Columns `start:stop` of the features, their distance, and its out-of-fold log scale."""

    name: str
    start: int
    stop: int
    distance: FeatureDistance
    log_mean: float
    log_std: float

    def z_scores(self, features: npt.NDArray[np.floating]) -> FloatArray:
        raw = np.log(self.distance.score(features[:, self.start : self.stop]) + LOG_EPSILON)
        result: FloatArray = (raw - self.log_mean) / self.log_std
        return result


@dataclass(frozen=True)
class LayeredDistance:
    """The mean over layers of the z-scored log distance (see module doc)."""

    parts: tuple[LayerPart, ...]

    @property
    def width(self) -> int:
        return max(p.stop for p in self.parts)

    def layer_scores(self, features: npt.NDArray[np.floating]) -> FloatArray:
        """(N × layers) z-scores, in `parts` order."""
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.width:
            raise ValueError(f"expected (N, {self.width}) features, got {x.shape}")
        return np.stack([p.z_scores(x) for p in self.parts], axis=1)

    def score(self, features: npt.NDArray[np.floating]) -> FloatArray:
        result: FloatArray = self.layer_scores(features).mean(axis=1)
        return result

    def to_bytes(self) -> bytes:
        """Uncompressed `.npz` (numpy arrays only, no pickle)."""
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "names": np.asarray([p.name for p in self.parts]),
            "bounds": np.asarray([[p.start, p.stop] for p in self.parts], dtype=np.int64),
            "log_scale": np.asarray([[p.log_mean, p.log_std] for p in self.parts]),
        }
        for i, p in enumerate(self.parts):
            arrays[f"projection_{i}"] = p.distance.projection
            arrays[f"centroids_{i}"] = p.distance.centroids
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[np.generic]]) -> LayeredDistance:
        parts = []
        for i, (name, bounds, scale) in enumerate(
            zip(arrays["names"], arrays["bounds"], arrays["log_scale"], strict=True)
        ):
            distance = FeatureDistance(
                projection=np.asarray(arrays[f"projection_{i}"], dtype=np.float32),
                centroids=np.asarray(arrays[f"centroids_{i}"], dtype=np.float32),
            )
            finite = all(
                np.isfinite(a).all() for a in (scale, distance.projection, distance.centroids)
            )
            if not finite or float(scale[1]) <= 0:
                raise ValueError(f"layer {name}: non-finite values or a log scale that is not > 0")
            if distance.projection.shape[0] != int(bounds[1]) - int(bounds[0]):
                raise ValueError(f"layer {name}: projection rows differ from its column range")
            parts.append(
                LayerPart(str(name), int(bounds[0]), int(bounds[1]), distance, *map(float, scale))
            )
        return cls(tuple(parts))


def load_distance(path: Path) -> FeatureDistance | LayeredDistance:
    """A `FeatureDistance` (one layer) or `LayeredDistance` artefact, by its arrays."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if "bounds" in arrays:
        return LayeredDistance.from_arrays(arrays)
    return FeatureDistance.load(path)
