"""Run the watermark / eye-bar shortcut check (`service.evaluation.watermark`).

`python -m service.training.shortcut_check --shipped [--backend effnet]`: the shipped model on
skin6 val (photos it never trained on when it was trained on train only).
`python -m service.training.shortcut_check --cv [--variant ema+flip]`: every fold's model on
its own held-out photos (all 2,026 photos, out of fold); writes
`models/cv/<name>.shortcuts.json`.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from service.evaluation.dataset import find_manifest, list_labelled_images
from service.evaluation.watermark import shortcut_check
from service.images import load_rgb
from service.pipeline.backends import load_classifier
from service.pipeline.domain import CLASSES
from service.pipeline.preprocess import classify_tensor
from service.settings import Settings
from service.training.cv import all_photos
from service.training.cv_fold import saved_model
from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD


def shipped_check(settings: Settings, backend: str) -> dict[str, Any]:
    data = settings.shared_dir / "data" / "skin6"
    val = list_labelled_images(data / "val", CLASSES, find_manifest(data))
    classifier = load_classifier(settings, backend)
    card = getattr(classifier, "card", None)
    if card is not None and "photos" in card.raw.get("training", {}).get("data", {}):
        raise SystemExit(f"{card.name} trained on val too: use --cv (out-of-fold) instead")

    def predict(images: list[Image.Image]) -> npt.NDArray[np.int64]:
        rows = [classifier.probabilities(images[i : i + 32]) for i in range(0, len(images), 32)]
        result: npt.NDArray[np.int64] = np.concatenate(rows).argmax(axis=1).astype(np.int64)
        return result

    images = [load_rgb(item.path) for item in val]
    labels = np.asarray([item.label for item in val], dtype=np.int64)
    result = shortcut_check(predict, images, labels, [i.group for i in val], len(CLASSES))
    return {"model": classifier.info.name, "photos": "skin6 val", **result}


def cv_check(data: Path, work_dir: Path, variant: str, imgsz: int) -> dict[str, Any]:
    """Out of fold: each photo judged by the fold model that never saw it."""
    items = all_photos(data)
    folds = np.asarray(json.loads((work_dir / "plan.json").read_text())["folds"])
    tag, flip = variant.split("+")[0], variant.endswith("+flip")
    models = []
    for fold in range(int(folds.max()) + 1):
        models.append(saved_model(work_dir, f"fold{fold}", tag, len(CLASSES)))
    order = list(range(len(items)))  # predict() receives the photos in this order

    def predict(images: list[Image.Image]) -> npt.NDArray[np.int64]:
        out = np.zeros(len(images), dtype=np.int64)
        for fold, model in enumerate(models):
            rows = [j for j, i in enumerate(order) if folds[i] == fold]
            for start in range(0, len(rows), 64):
                chunk = rows[start : start + 64]
                x = torch.from_numpy(
                    np.stack(
                        [
                            classify_tensor(images[j], imgsz, IMAGENET_MEAN, IMAGENET_STD)
                            for j in chunk
                        ]
                    )
                )
                with torch.no_grad():
                    logits = model(x)
                    if flip:
                        logits = (logits + model(x.flip(-1))) / 2
                out[chunk] = logits.argmax(dim=1).numpy()
        return out

    images = [load_rgb(item.path) for item in items]
    labels = np.asarray([item.label for item in items], dtype=np.int64)
    result = shortcut_check(predict, images, labels, [i.group for i in items], len(CLASSES))
    return {"variant": variant, "photos": "skin6 train + val, out of fold", **result}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--shipped", action="store_true")
    mode.add_argument("--cv", action="store_true")
    parser.add_argument("--backend", default="effnet")
    parser.add_argument("--name", default=None, help="default: the served effnet model")
    parser.add_argument("--variant", default=None, help="default: the CV report's chosen one")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args(argv)
    settings = Settings()
    args.name = args.name or settings.effnet_model
    torch.set_num_threads(args.threads)
    if args.shipped:
        print(json.dumps(shipped_check(settings, args.backend), indent=1))
        return 0
    work_dir = args.work_dir or Path("build/cv") / args.name
    report_path = settings.models_dir / "cv" / f"{args.name}.cv.json"
    variant = args.variant or json.loads(report_path.read_text())["chosen"]
    imgsz = json.loads((work_dir / "plan.json").read_text())["recipe"]["imgsz"]
    data = settings.shared_dir / "data" / "skin6"
    result = cv_check(data, work_dir, variant, imgsz)
    out = settings.models_dir / "cv" / f"{args.name}.shortcuts.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
