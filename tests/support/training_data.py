"""A tiny skin6 subset and recipe for the training smoke tests.

Import it only after `pytest.importorskip("torch")`: the recipe is a training type.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from service.training.effnet import EffnetRecipe

CLASSES = ["Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea"]
TINY = EffnetRecipe(epochs=1, imgsz=64, train_imgsz=64, cache_edge=72, batch=6, freeze_blocks=3)
#: Two epochs of TINY: the cross-validation run the CV tests share (`tests/unit/conftest.py`).
CV_RECIPE = EffnetRecipe(**{**TINY.__dict__, "epochs": 2, "patience": 2})


def tiny_dataset(skin6_dir: Path, target: Path, per_class: int = 2) -> Path:
    """Copy `per_class` train and val images of each class (no manifest: one group each)."""
    for split in ("train", "val"):
        for class_dir in sorted((skin6_dir / split).iterdir()):
            folder = target / split / class_dir.name
            folder.mkdir(parents=True)
            for image in sorted(class_dir.glob("*.jpg"))[:per_class]:
                shutil.copyfile(image, folder / image.name)
    return target
