"""Training smoke test: a handful of skin6 images, one epoch, tiny size; export and card work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.pipeline.classifier import OnnxClassifier


@pytest.mark.slow
def test_train_export_and_card(skin6_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ultralytics", reason="training needs the `train` extra")
    from service.training.yolo import YoloRecipe, train_yolo

    data = tmp_path / "data"
    for split in ("train", "val"):
        for class_dir in sorted((skin6_dir / split).iterdir()):
            target = data / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.glob("*.jpg"))[:2]:
                shutil.copyfile(image, target / image.name)
    recipe = YoloRecipe(epochs=1, imgsz=32, batch=4)
    out = tmp_path / "models"
    card = train_yolo(data, out, "smoke", recipe, tmp_path / "work", version="0.0.1")

    assert (out / "smoke.onnx").is_file() and (out / "smoke.pt").is_file()
    on_disk = json.loads((out / "smoke.json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    assert on_disk["classes"] == ["Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea"]
    assert on_disk["imgsz"] == 32
    assert on_disk["training"]["recipe"]["epochs"] == 1
    assert on_disk["training"]["data"]["files_sha256"]
    val = on_disk["metrics"]["val"]
    assert val["n"] == 12 and set(val["per_class"]) == set(on_disk["classes"])
    assert len(val["confusion_matrix"]["rows_true_cols_pred"]) == 6
    assert on_disk["metrics"]["val_by_photo_group"]["groups"] == 12
    assert on_disk["calibration"]["temperature"] > 0
    classifier = OnnxClassifier.from_card_path(out / "smoke.json")
    assert classifier.info.name == "smoke"
