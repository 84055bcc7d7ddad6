"""The ONNX adapter reproduces Ultralytics' predict probabilities on real skin6 photos."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from service.images import load_rgb
from service.pipeline.backends import card_path
from service.pipeline.classifier import OnnxClassifier
from service.settings import Settings


@pytest.fixture(scope="module")
def yolo_card(settings: Settings) -> Path:
    path = card_path(settings, "yolo")
    assert path.is_file(), f"shipped YOLO model card missing: {path}"
    return path


def test_onnx_matches_ultralytics_predict(
    yolo_card: Path, skin6_val_images: dict[str, list[Path]], tmp_path: Path
) -> None:
    pytest.importorskip("ultralytics", reason="parity needs the `train` extra (ultralytics)")
    from service.training.offline import prepare_offline_ultralytics

    prepare_offline_ultralytics(tmp_path / "yolo-config")
    from ultralytics import YOLO

    classifier = OnnxClassifier.from_card_path(yolo_card)
    reference = YOLO(str(yolo_card.with_suffix(".pt")), task="classify")
    paths = [p for images in skin6_val_images.values() for p in images[:4]]
    worst = 0.0
    for path in paths:
        ours = classifier.raw_probabilities([load_rgb(path)])[0]
        theirs = reference.predict(str(path), imgsz=classifier.card.imgsz, verbose=False)[0]
        delta = float(np.abs(ours - theirs.probs.data.numpy().astype(np.float64)).max())
        worst = max(worst, delta)
    assert worst < 1e-4, f"max probability difference {worst:.2e} over {len(paths)} images"


def test_probabilities_cover_all_classes(
    yolo_card: Path, skin6_val_images: dict[str, list[Path]]
) -> None:
    classifier = OnnxClassifier.from_card_path(yolo_card)
    probs = classifier.probabilities([load_rgb(skin6_val_images["Milia"][0])])
    assert probs.shape == (1, 6)
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)
    assert classifier.info.sha256 == classifier.card.onnx_sha256
    assert len(classifier.info.sha256) == 64
    assert os.path.basename(str(classifier.card.onnx_path)).endswith(".onnx")


def test_tampered_weights_refused(yolo_card: Path, tmp_path: Path) -> None:
    from service.pipeline.classifier import ModelIntegrityError
    from service.pipeline.model_card import ModelCard

    card = ModelCard.load(yolo_card)
    tampered = tmp_path / card.onnx_path.name
    tampered.write_bytes(card.onnx_path.read_bytes() + b"\0")
    (tmp_path / yolo_card.name).write_text(yolo_card.read_text())
    with pytest.raises(ModelIntegrityError):
        OnnxClassifier.from_card_path(tmp_path / yolo_card.name)
