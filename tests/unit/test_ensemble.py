"""The ensemble card: two tiny fine-tuned models, evaluated through the serving classifiers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="making the member models needs the `train` extra")
pytest.importorskip("efficientnet_lite_pytorch", reason="needs the `train` extra")

from service.evaluation.dataset import list_labelled_images
from service.images import load_rgb
from service.pipeline.backends import available_backends, default_backend, headline_macro_f1
from service.pipeline.classifier import OnnxClassifier
from service.settings import Settings
from service.training.effnet import train_effnet
from service.training.ensemble import ship_ensemble
from tests.support.training_data import CLASSES, TINY, tiny_dataset


@pytest.mark.slow
def test_ship_ensemble_writes_a_card_that_backends_read(skin6_dir: Path, tmp_path: Path) -> None:
    data = tiny_dataset(skin6_dir, tmp_path / "data", per_class=2)
    models = tmp_path / "models"
    for name, seed in (("member-a", 1), ("member-b", 2)):
        train_effnet(data, models, name, replace(TINY, seed=seed), tmp_path / "work", "0.0.1")
    settings = Settings(models_dir=models, yolo_model="member-a", effnet_model="member-b")

    card = ship_ensemble(settings, data=data, version="0.0.1")

    on_disk = json.loads((models / "skinscreen-ensemble.json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    assert on_disk["classes"] == CLASSES
    member_cards = [
        json.loads((models / f"{n}.json").read_text()) for n in ("member-a", "member-b")
    ]
    assert [m["onnx_sha256"] for m in on_disk["members"]] == [
        c["weights"]["onnx_sha256"] for c in member_cards
    ]
    assert [m["temperature"] for m in on_disk["members"]] == [
        c["calibration"]["temperature"] for c in member_cards
    ]
    val = on_disk["metrics"]["val"]
    assert {"top1", "macro_f1", "ece_15", "per_class", "confusion_matrix"} <= set(val)
    assert val["n"] == 12 and on_disk["metrics"]["val_by_photo_group"]["groups"] == 12

    # Recompute the ensemble by hand from the two served members: same predictions.
    items = list_labelled_images(data / "val", tuple(CLASSES))
    images = [load_rgb(i.path) for i in items]
    members = [
        OnnxClassifier.from_card_path(models / f"{n}.json") for n in ("member-a", "member-b")
    ]
    mean = np.mean([m.probabilities(images) for m in members], axis=0)
    confusion = np.zeros((6, 6), dtype=int)
    np.add.at(confusion, ([i.label for i in items], mean.argmax(axis=1)), 1)
    assert val["confusion_matrix"]["rows_true_cols_pred"] == confusion.tolist()

    assert available_backends(settings) == ["yolo", "effnet", "ensemble"]
    assert headline_macro_f1(settings, "ensemble") == (False, val["macro_f1"])
    best = max(headline_macro_f1(settings, b) for b in ("yolo", "effnet", "ensemble"))
    assert headline_macro_f1(settings, default_backend(settings)) == best
