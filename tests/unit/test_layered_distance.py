"""Multi-layer feature distance: the artefact, its scores, and the tapped ONNX graph."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.pipeline.feature_ood import FeatureDistance, fit_feature_distance
from service.pipeline.layered_distance import LayeredDistance, LayerPart, load_distance
from service.training.layer_gate import (
    combined,
    cross_fitted,
    fit_layered_distance,
    layer_distances,
    log_scale,
)
from service.training.layer_taps import LAST_LAYER, TAPS, layout, tapped_forward
from service.training.onnx_export import FEATURES_NAME, INPUT_NAME, export_onnx, onnx_parity


def two_layers(seed: int = 0, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Features of two 'layers' (8 + 6 columns), three classes apart in both."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n)
    first = np.abs(4.0 * np.eye(8)[:3][labels] + rng.normal(0, 0.3, (3 * n, 8)))
    second = np.abs(3.0 * np.eye(6)[:3][labels] + rng.normal(0, 0.3, (3 * n, 6)))
    return np.concatenate([first, second], axis=1), labels


def fitted(x: np.ndarray, y: np.ndarray) -> LayeredDistance:
    """Fitted on the even rows; the log scale from the odd (held-out) rows' distances."""
    parts = [("a", 0, 8), ("b", 8, 14)]
    scale = log_scale(layer_distances(x[::2], y[::2], parts, x[1::2]))
    return fit_layered_distance(
        x[::2], y[::2], parts, {name: tuple(scale[i]) for i, (name, _, _) in enumerate(parts)}
    )


def test_score_is_the_mean_layer_z_score_and_flags_a_change_in_either_layer() -> None:
    x, y = two_layers()
    distance = fitted(x, y)
    held = distance.layer_scores(x[1::2])
    assert held.shape == (180, 2)
    assert np.allclose(distance.score(x[1::2]), held.mean(axis=1))
    # out-of-fold standardisation: the held-out photos' log distances are z-scores
    assert np.allclose(held.mean(axis=0), 0, atol=1e-6) and np.allclose(held.std(axis=0), 1)
    limit = np.percentile(distance.score(x[1::2]), 99)
    odd_second = x[1::2][:5].copy()
    odd_second[:, 8:] = np.abs(np.random.default_rng(2).normal(0, 1, (5, 6)))  # only layer b
    assert (distance.layer_scores(odd_second)[:, 1] > limit).all()
    assert (distance.score(odd_second) > limit).all()


def test_artefact_round_trips_and_loads_by_kind(tmp_path: Path) -> None:
    x, y = two_layers()
    distance = fitted(x, y)
    path = tmp_path / "layers.npz"
    path.write_bytes(distance.to_bytes())
    loaded = load_distance(path)
    assert isinstance(loaded, LayeredDistance)
    assert [p.name for p in loaded.parts] == ["a", "b"]
    assert np.allclose(loaded.score(x[:20]), distance.score(x[:20]))
    with np.load(path, allow_pickle=False) as arrays:  # no pickled objects in the artefact
        assert "bounds" in arrays.files
    single = tmp_path / "single.npz"
    single.write_bytes(fit_feature_distance(x, y, dims=8).to_bytes())
    assert isinstance(load_distance(single), FeatureDistance)


def test_wrong_width_and_bad_scale_are_refused() -> None:
    x, y = two_layers()
    distance = fitted(x, y)
    with pytest.raises(ValueError, match="expected"):
        distance.score(x[:, :10])
    part = distance.parts[0]
    broken = LayeredDistance((LayerPart(part.name, 0, 8, part.distance, 0.0, 0.0),))
    with np.load(io.BytesIO(broken.to_bytes()), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    with pytest.raises(ValueError, match="log scale"):
        LayeredDistance.from_arrays(arrays)
    arrays["log_scale"] = np.asarray([[0.0, np.nan]])
    with pytest.raises(ValueError, match="non-finite"):
        LayeredDistance.from_arrays(arrays)
    arrays["log_scale"], arrays["bounds"] = np.asarray([[0.0, 1.0]]), np.asarray([[0, 7]])
    with pytest.raises(ValueError, match="projection rows"):
        LayeredDistance.from_arrays(arrays)


def test_a_non_finite_distance_is_a_clear_rejection() -> None:
    from service.pipeline.gate_config import FeatureThreshold, QualityThresholds
    from service.pipeline.screening import unfamiliarity

    entry = FeatureThreshold(2.5, 1.9, "m", "s", "s", "a", "x", 99.8, 99.0, unusual_threshold=1.6)
    m = {"skin_fraction": 0.9, "noise_ratio": 1.0}
    assert unfamiliarity(m, None, QualityThresholds(), None, float("nan"), entry) == "clear"
    assert unfamiliarity(m, None, QualityThresholds(), None, 1.0, entry) is None
    assert unfamiliarity(m, None, QualityThresholds(), None, 2.0, entry) == "marginal"


@pytest.fixture(scope="module")
def small_effnet() -> torch.nn.Module:
    from service.training.effnet_model import EffnetRecipe, build_model

    torch.manual_seed(0)
    return build_model(6, EffnetRecipe(imgsz=64)).eval()


def test_tapped_forward_keeps_the_logits_and_lays_out_every_layer(
    small_effnet: torch.nn.Module,
) -> None:
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        logits, features = tapped_forward(small_effnet, images)
        expected = small_effnet(images)
    assert torch.allclose(logits, expected, atol=1e-5)
    parts = layout(small_effnet)
    assert [p[0] for p in parts] == [LAST_LAYER, *(f"block{t}" for t in TAPS)]
    assert parts[0] == (LAST_LAYER, 0, 1280) and parts[-1][2] == features.shape[1] == 2736
    # hooks are gone afterwards: a plain forward pass is unaffected
    assert not any(b._forward_hooks for b in small_effnet.get_submodule("_blocks").children())


def test_tapped_onnx_graph_matches_torch_with_flip_averaging(
    small_effnet: torch.nn.Module, tmp_path: Path
) -> None:
    path = tmp_path / "tapped.onnx"
    export_onnx(small_effnet, path, 64, with_features=True, flip_tta=True, tapped=True)
    images = torch.randn(2, 3, 64, 64)
    assert onnx_parity(small_effnet, path, images, flip_tta=True) < 1e-4
    assert onnx_parity(small_effnet, path, images, flip_tta=True, tapped=True) < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (features,) = session.run([FEATURES_NAME], {INPUT_NAME: images.numpy()})
    with torch.no_grad():
        _, expected = tapped_forward(small_effnet, images)  # the plain image's features
    assert np.allclose(features, expected.numpy(), atol=1e-4)


def test_combined_and_cross_fitted_scores_match_the_artefact() -> None:
    x, y = two_layers()
    parts = [("a", 0, 8), ("b", 8, 14)]
    held = layer_distances(x[::2], y[::2], parts, x[1::2])
    distance = fitted(x, y)
    assert np.allclose(combined(held, log_scale(held)), distance.score(x[1::2]))
    folds = np.arange(len(held)) % 3
    scores, neg = cross_fitted(held, folds, np.stack([held[:4]] * 3))
    assert neg is not None and neg.shape == (3, 4)
    for f in range(3):  # fold f on the scale of the other folds
        scale = log_scale(held[folds != f])
        assert np.allclose(scores[folds == f], combined(held[folds == f], scale))
        assert np.allclose(neg[f], combined(held[:4], scale))


def test_taps_are_found_by_width_in_every_lite_variant(small_effnet: torch.nn.Module) -> None:
    from service.training.effnet_model import EffnetRecipe, build_model, pretrained_weights_path
    from service.training.layer_taps import default_taps

    assert default_taps(small_effnet) == TAPS
    lite1 = build_model(6, EffnetRecipe(imgsz=64, arch="efficientnet-lite1")).eval()
    assert default_taps(lite1) == (3, 7, 11, 15, 20)  # 21 blocks: deeper stages, same places
    lite2 = build_model(6, EffnetRecipe(imgsz=64, arch="efficientnet-lite2")).eval()
    assert default_taps(lite2) == (3, 7, 11, 15, 20)  # wider (24/48/88/120/208/352 channels)
    with torch.no_grad():
        logits, features = tapped_forward(lite1, torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 6) and features.shape[1] == layout(lite1)[-1][2]
    with pytest.raises(ValueError, match="unknown"):
        pretrained_weights_path("efficientnet-lite9")
