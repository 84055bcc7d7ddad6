"""The multi-layer feature gate, fitted: per-layer distances out of fold, their log scales, the
combined score, and the shipped artefact (`pipeline.layered_distance.LayeredDistance`).

Distances are arrays of shape (photos × layers) in `layer_names` order. A photo's combined
score is the mean over layers of `(log d − log_mean) / log_std`; the log scale comes from skin
photos the scoring model never trained on (held-out folds). Cross-fitted scores standardise each
fold with the scales of the *other* folds, so no photo's score is on a scale it helped to set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from service.pipeline.feature_ood import DEFAULT_DIMS, fit_feature_distance
from service.pipeline.layered_distance import LOG_EPSILON, LayeredDistance, LayerPart
from service.training.layer_taps import layout, tapped_forward

FloatArray = npt.NDArray[np.float64]
Layout = Sequence[tuple[str, int, int]]


@torch.no_grad()
def tapped_features(model: nn.Module, images: torch.Tensor, batch: int = 64) -> FloatArray:
    """The multi-layer gate features (`layer_taps`) of `images`, in eval mode."""
    model.eval()
    rows = [tapped_forward(model, images[i : i + batch])[1] for i in range(0, len(images), batch)]
    return torch.cat(rows).double().numpy()


def layer_dims(width: int) -> int:
    return min(DEFAULT_DIMS, width - 1)


def layer_distances(
    train: FloatArray, train_labels: npt.NDArray[np.int64], parts: Layout, scored: FloatArray
) -> FloatArray:
    """(len(scored) × layers) distances with class means fitted on `train`, layer by layer."""
    columns = []
    for _, start, stop in parts:
        distance = fit_feature_distance(
            train[:, start:stop], train_labels, dims=layer_dims(stop - start)
        )
        columns.append(distance.score(scored[:, start:stop]))
    return np.stack(columns, axis=1)


def log_scale(distances: FloatArray) -> FloatArray:
    """(layers × 2): mean and standard deviation of each layer's log distance."""
    logs = np.log(distances + LOG_EPSILON)
    return np.stack([logs.mean(axis=0), logs.std(axis=0)], axis=1)


def combined(distances: FloatArray, scale: FloatArray) -> FloatArray:
    """Mean z-scored log distance per photo (what `LayeredDistance.score` computes)."""
    z = (np.log(distances + LOG_EPSILON) - scale[:, 0]) / scale[:, 1]
    result: FloatArray = z.mean(axis=1)
    return result


def cross_fitted(
    distances: FloatArray, folds: npt.NDArray[np.int64], negatives: FloatArray | None = None
) -> tuple[FloatArray, FloatArray | None]:
    """Combined OOF scores, each fold on the scale of the other folds; with `negatives`
    (folds × images × layers, scored by each fold's model) their scores on the same scales."""
    scores = np.zeros(len(distances))
    neg = None if negatives is None else np.zeros(negatives.shape[:2])
    for fold in range(int(folds.max()) + 1):
        scale = log_scale(distances[folds != fold])
        scores[folds == fold] = combined(distances[folds == fold], scale)
        if negatives is not None and neg is not None:
            neg[fold] = combined(negatives[fold], scale)
    return scores, neg


def fit_layered_distance(
    features: FloatArray,
    labels: npt.NDArray[np.int64],
    parts: Layout,
    scale: Mapping[str, tuple[float, float]],
) -> LayeredDistance:
    """Per-layer class means and whitening on `features`; each layer's log scale from `scale`
    (distances of photos the model did not train on)."""
    fitted = []
    for name, start, stop in parts:
        distance = fit_feature_distance(
            features[:, start:stop], labels, dims=layer_dims(stop - start)
        )
        mean, std = scale[name]
        fitted.append(LayerPart(name, start, stop, distance, float(mean), float(std)))
    return LayeredDistance(tuple(fitted))


def fold_layer_distances(
    model: nn.Module,
    train: torch.Tensor,
    train_labels: npt.NDArray[np.int64],
    scored: Mapping[str, torch.Tensor],
) -> dict[str, FloatArray]:
    """{set name: (images × layers) distances} under one fold's model and its training photos."""
    parts = layout(model)
    reference = tapped_features(model, train)
    return {
        name: layer_distances(reference, train_labels, parts, tapped_features(model, images))
        for name, images in scored.items()
    }
