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


def _linked_models(settings: Settings, target: Path) -> Path:
    """The shipped models as symlinks in `target` (cards, graphs, gate and triage files)."""
    target.mkdir()
    for source in settings.models_dir.iterdir():
        if source.is_file() and source.name != "skinscreen-ensemble.json":
            (target / source.name).symlink_to(source.resolve())
    return target


def test_ensemble_members_come_from_its_card_in_its_order(
    settings: Settings, skin_jpeg: bytes, tmp_path: Path
) -> None:
    import io

    from PIL import Image

    from service.pipeline.backends import load_classifier
    from service.pipeline.classifier import EnsembleClassifier
    from service.pipeline.ood import forward

    cards = [f"{settings.effnet_model}.json", f"{settings.yolo_model}.json"]
    if not all((settings.models_dir / c).is_file() for c in cards):
        pytest.skip(f"no shipped models in {settings.models_dir}")
    models = _linked_models(settings, tmp_path / "models")
    card = {"name": "skinscreen-ensemble", "members": [{"card": c} for c in cards]}
    (models / "skinscreen-ensemble.json").write_text(json.dumps({**card, "weights": [3, 1]}))
    # members named by the card only: neither is the configured yolo single backend
    linked = settings.model_copy(update={"models_dir": models, "yolo_model": "not-shipped"})
    assert available_backends(linked) == ["effnet", "ensemble"]

    ensemble = load_classifier(linked, "ensemble")
    assert isinstance(ensemble, EnsembleClassifier)
    assert [m.info.name for m in ensemble.members] == [settings.effnet_model, settings.yolo_model]
    assert ensemble.weights.tolist() == [0.75, 0.25]
    image = [Image.open(io.BytesIO(skin_jpeg)).convert("RGB")]
    by_hand = 0.75 * ensemble.members[0].probabilities(image)
    by_hand += 0.25 * ensemble.members[1].probabilities(image)
    assert ensemble.logits(image) == pytest.approx(np.log(by_hand), abs=1e-6)
    assert forward(ensemble, image).probabilities == pytest.approx(by_hand, abs=1e-6)

    # a missing member makes the ensemble unavailable; a path outside models_dir or a member
    # without a card leaves it out (logged) and fails loudly where it is asked for
    (models / "skinscreen-ensemble.json").write_text(
        json.dumps({"members": [{"card": cards[0]}, {"card": "gone.json"}]})
    )
    assert available_backends(linked) == ["effnet"]
    (models / "skinscreen-ensemble.json").write_text(
        json.dumps({"members": [{"card": cards[0]}, {"card": "../elsewhere.json"}]})
    )
    assert available_backends(linked) == ["effnet"]
    with pytest.raises(ValueError, match="not a file name"):
        load_classifier(linked, "ensemble")
    (models / "skinscreen-ensemble.json").write_text(
        json.dumps({"members": [{"card": cards[0]}, {"name": "no card"}]})
    )
    assert available_backends(linked) == ["effnet"]
    with pytest.raises(ValueError, match="not a file name"):
        load_classifier(linked, "ensemble")
    for broken in ("{not json", "[]", '{"members": ["a.json", "b.json"]}'):
        (models / "skinscreen-ensemble.json").write_text(broken)
        assert available_backends(linked) == ["effnet"]
        assert default_backend(linked) == "effnet"  # the single models keep working
