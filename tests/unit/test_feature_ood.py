"""Feature-space OOD distance; the shipped EfficientNet's two outputs (logits, features)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from service.images import load_rgb
from service.pipeline.backends import card_path, load_classifier
from service.pipeline.classifier import OnnxClassifier
from service.pipeline.feature_ood import FeatureDistance, fit_feature_distance, l2_normalise
from service.pipeline.gate_config import GateConfig
from service.pipeline.screening import Screener
from service.settings import Settings


def clusters(seed: int = 0, n: int = 200, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Three tight Gaussian clusters around orthogonal directions (non-negative, like ReLU)."""
    rng = np.random.default_rng(seed)
    centres = 5.0 * np.eye(dim)[:3]
    labels = np.repeat(np.arange(3), n)
    return np.abs(centres[labels] + rng.normal(0, 0.3, (3 * n, dim))), labels


def test_in_distribution_is_close_and_a_far_point_is_flagged() -> None:
    x, y = clusters()
    distance = fit_feature_distance(x[::2], y[::2], dims=16)
    held_out = distance.score(x[1::2])
    far = distance.score(np.abs(np.random.default_rng(1).normal(0, 1, (5, 16))))
    between = distance.score((x[y == 0][:5] + x[y == 1][:5]) / 2)  # half-way between two classes
    limit = np.percentile(held_out, 99)
    assert held_out.shape == (300,) and held_out.min() >= 0
    assert (far > 5 * limit).all() and (between > 5 * limit).all()


def test_full_rank_distance_is_the_tied_covariance_mahalanobis() -> None:
    """With every axis kept it equals Lee et al.'s min_c (x−μ_c)ᵀ Σ⁻¹ (x−μ_c), Σ shared."""
    x, y = clusters(seed=2, dim=6)
    z = l2_normalise(x).astype(np.float64)
    means = np.stack([z[y == c].mean(axis=0) for c in range(3)])
    precision = np.linalg.inv(np.cov((z - means[y]).T, bias=True))
    queries = np.abs(np.random.default_rng(3).normal(1, 1, (7, 6)))
    q = l2_normalise(queries).astype(np.float64)
    expected = np.min([np.einsum("nd,de,ne->n", q - m, precision, q - m) for m in means], axis=0)
    actual = fit_feature_distance(x, y, dims=6).score(queries)
    np.testing.assert_allclose(actual, expected, rtol=1e-3)


def test_artefact_round_trip(tmp_path: Path) -> None:
    x, y = clusters()
    fitted = fit_feature_distance(x, y, dims=4)
    path = tmp_path / "d.npz"
    path.write_bytes(fitted.to_bytes())
    loaded = FeatureDistance.load(path)
    assert loaded.projection.shape == (16, 4) and loaded.centroids.shape == (3, 4)
    np.testing.assert_array_equal(loaded.score(x[:9]), fitted.score(x[:9]))


# --- the shipped model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def effnet(settings: Settings) -> OnnxClassifier:
    path = card_path(settings, "effnet")
    if not path.is_file():
        pytest.skip(f"no shipped effnet model in {settings.models_dir}")
    return OnnxClassifier.from_card_path(path)


def test_two_output_graph_matches_torch(
    effnet: OnnxClassifier, skin6_val_images: dict[str, list[Path]]
) -> None:
    """Logits and gate features of the shipped ONNX equal the torch model rebuilt from .pt (with
    the flip averaging and multi-layer features its card names)."""
    torch = pytest.importorskip("torch", reason="needs the `train` extra")
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the `train` extra")
    from service.training.effnet_features import serving_model

    assert effnet.card.outputs == ("logits", "features") and effnet.has_features
    images = [load_rgb(paths[0]) for paths in skin6_val_images.values()][:4]
    logits, features = effnet.forward(images)
    model = serving_model(effnet.card)
    batch = torch.from_numpy(np.stack([effnet.preprocess(i) for i in images]))
    with torch.no_grad():
        expected_logits, expected_features = (t.numpy() for t in model(batch))
    kind = effnet.card.raw["training"]["recipe"].get("features", {}).get("kind")
    width = 2736 if kind == "multi-layer gate features" else 1280  # v2: last layer + 5 blocks
    assert features is not None and features.shape == (4, width)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
    np.testing.assert_allclose(features, expected_features, atol=1e-4)
    np.testing.assert_array_equal(effnet.features(images), features)
    np.testing.assert_array_equal(effnet.logits(images), logits)


def test_screener_ignores_a_tampered_artefact(settings: Settings, tmp_path: Path) -> None:
    config = GateConfig.load(settings.models_dir)
    entry = config.features.get("effnet")
    if entry is None:
        pytest.skip("models/gate.json has no feature threshold for effnet")
    classifier = load_classifier(settings, "effnet")
    assert Screener(classifier, config, 0.5, 0.1).features is not None
    shutil.copyfile(settings.models_dir / "gate.json", tmp_path / "gate.json")
    blob = (settings.models_dir / entry.artefact).read_bytes()
    (tmp_path / entry.artefact).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    assert Screener(classifier, GateConfig.load(tmp_path), 0.5, 0.1).features is None
