"""Feature-space out-of-distribution distance: Mahalanobis to the nearest skin6 class.

Method: Lee et al. 2018, "A simple unified framework for detecting out-of-distribution samples
and adversarial attacks" (NeurIPS): one Gaussian per class with a shared covariance, fitted on
the training set's penultimate features; the score is the Mahalanobis distance to the nearest
class mean. Logit scores (energy, max-logit) miss photos that the head maps confidently to a
class (teeth, endoscopy); their pooled features still lie far from every class's cloud.

Here the features are L2-normalised first (as in Sun et al. 2022), and the 1280-d shared
covariance, singular with 1666 training images, is kept on its top `dims` principal axes
(256 keep 90% of the within-class variance for EfficientNet-Lite0), where it is whitened, so the
distance is a plain squared Euclidean one: `min_c ||x W − m_c||²`.

Why not deep k-nearest neighbours (Sun et al. 2022, "Out-of-distribution detection with deep
nearest neighbors", ICML)? Measured with the shipped EfficientNet on skin6 val: kNN cosine
distance (k = 50) put teeth and endoscopy at the 98.6th and 98.3rd val percentiles, this
distance at the 99.2nd and 99.4th; and its artefact is 1.3 MB instead of 4.3 MB.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FeatureArray = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]
DEFAULT_DIMS = 256


def l2_normalise(features: npt.NDArray[np.floating]) -> FeatureArray:
    """Rows scaled to unit length (an all-zero row stays zero)."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    result: FeatureArray = x / np.maximum(norms, 1e-12)
    return result


@dataclass(frozen=True)
class FeatureDistance:
    """Whitening projection `W` (D × dims) and the class means projected by it (C × dims)."""

    projection: FeatureArray
    centroids: FeatureArray

    def score(self, features: npt.NDArray[np.floating]) -> FloatArray:
        """Squared Mahalanobis distance to the nearest class per row (larger: less familiar)."""
        z = l2_normalise(features) @ self.projection
        squared = (
            (z * z).sum(axis=1, keepdims=True)
            - 2.0 * z @ self.centroids.T
            + (self.centroids * self.centroids).sum(axis=1)
        )
        result: FloatArray = np.maximum(squared.min(axis=1), 0.0).astype(np.float64)
        return result

    def to_bytes(self) -> bytes:
        """Uncompressed `.npz` (numpy arrays only, no pickle)."""
        buffer = io.BytesIO()
        np.savez(buffer, projection=self.projection, centroids=self.centroids)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path) -> FeatureDistance:
        """Read what `to_bytes` wrote."""
        with np.load(path, allow_pickle=False) as arrays:
            return cls(
                projection=arrays["projection"].astype(np.float32),
                centroids=arrays["centroids"].astype(np.float32),
            )


def fit_feature_distance(
    features: npt.NDArray[np.floating], labels: npt.NDArray[np.integer], dims: int = DEFAULT_DIMS
) -> FeatureDistance:
    """Class means and the shared within-class covariance of normalised training features."""
    x = l2_normalise(features).astype(np.float64)
    classes = np.unique(labels)
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, labels)]
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    dims = min(dims, int((singular > 1e-8 * singular[0]).sum()))
    scale = singular[:dims] / np.sqrt(len(x))  # standard deviations along the principal axes
    projection = (axes[:dims].T / scale).astype(np.float32)
    return FeatureDistance(projection, (means @ projection).astype(np.float32))
