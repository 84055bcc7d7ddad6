"""The gate's negatives (images that are not skin photos) scored by every fold's model.

Negatives: the shared DICOM non-skin photos, images generated from a skin photo or from nothing
(`evaluation.negatives`), and the wider set (package-bundled photos of people and objects,
radiology, histology, screenshots, documents). No model ever trained on them, so each fold's
model and its class means give an honest distance; `cv_fit` judges them with the gate
thresholds fitted on the skin photos' OOF distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from service.evaluation.negatives import dicom_negatives, generated_negatives, wider_negatives
from service.pipeline.domain import CLASSES
from service.pipeline.feature_ood import fit_feature_distance
from service.pipeline.preprocess import classify_tensor
from service.training.cv_fold import logits_and_features, saved_model
from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD


def negative_images(shared_dir: Path, skin: Image.Image) -> dict[str, tuple[str, Image.Image]]:
    """name → (kind, RGB image) of every negative: shared DICOM, generated, wider."""
    found: dict[str, tuple[str, Image.Image]] = {}
    dicom_dir = shared_dir / "dicom"
    if dicom_dir.is_dir():
        found.update({n: ("shared DICOM", img) for n, img in dicom_negatives(dicom_dir)})
    found.update({n: ("generated", img) for n, img in generated_negatives(skin).items()})
    found.update(wider_negatives())
    return found


def negative_distances(
    work_dir: Path,
    k: int,
    tag: str,
    images: Sequence[Image.Image],
    labels: npt.NDArray[np.int64],
    imgsz: int,
) -> npt.NDArray[np.float64]:
    """(k × negatives) feature distances under each fold's model and its class means."""
    batch = torch.from_numpy(
        np.stack([classify_tensor(img, imgsz, IMAGENET_MEAN, IMAGENET_STD) for img in images])
    )
    rows = []
    for fold in range(k):
        model = saved_model(work_dir, f"fold{fold}", tag, len(CLASSES))
        _, features = logits_and_features(model, batch)
        with np.load(work_dir / f"fold{fold}.npz") as part:
            distance = fit_feature_distance(
                part[f"{tag}_train_features"], labels[part["train_index"]]
            )
        rows.append(distance.score(features))
    return np.stack(rows)
