"""Multi-layer feature distances out of fold, for the gate (`layer_gate`, `cv_fit`).

`python -m service.training.cv_layers [--tag ema]` adds them to an OOF file made before they
existed; `cv.assemble` computes them for every new CV run.

For every fold model: the pooled last layer and the channel means / standard deviations of a
few intermediate blocks (`layer_taps.TAPS`) of its training photos, its held-out photos and the
negatives; per layer, the Mahalanobis distance to the nearest class (class means and covariance
from the fold's own training photos, `feature_ood`). Stored in the OOF file: `layer_names`,
`{tag}_layer_distances` (photos × layers, each photo scored by the model that did not train on
it) and `{tag}_negative_layer_distances` (folds × negatives × layers). Also printed (and written
to `models/cv/<name>.layers.json`): where every negative falls among the skin photos, per layer
and combined, cross-fitted.
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

from service.pipeline.domain import CLASSES
from service.pipeline.preprocess import classify_tensor
from service.settings import Settings
from service.training.cv_fold import saved_model
from service.training.effnet_data import cache_eval_images
from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD
from service.training.layer_gate import cross_fitted, fold_layer_distances
from service.training.layer_taps import layout

FloatArray = npt.NDArray[np.float64]


def layer_arrays(
    paths: Sequence[Path],
    labels: npt.NDArray[np.int64],
    folds: npt.NDArray[np.int64],
    work_dir: Path,
    tag: str,
    imgsz: int,
    negatives: Sequence[Image.Image],
) -> dict[str, npt.NDArray[Any]]:
    """The OOF file's multi-layer arrays for one weight tag (see module doc)."""
    images = cache_eval_images(paths, imgsz)
    neg_batch = torch.from_numpy(
        np.stack([classify_tensor(img, imgsz, IMAGENET_MEAN, IMAGENET_STD) for img in negatives])
    )
    k = int(folds.max()) + 1
    held_d: FloatArray | None = None
    neg_d: list[FloatArray] = []
    names: list[str] = []
    for fold in range(k):
        model = saved_model(work_dir, f"fold{fold}", tag, len(CLASSES))
        names = [name for name, _, _ in layout(model)]
        train, held = folds != fold, folds == fold
        out = fold_layer_distances(
            model, images[train], labels[train], {"held": images[held], "neg": neg_batch}
        )
        if held_d is None:
            held_d = np.zeros((len(paths), len(names)))
        held_d[held] = out["held"]
        neg_d.append(out["neg"])
    assert held_d is not None
    return {
        "layer_names": np.asarray(names),
        f"{tag}_layer_distances": held_d,
        f"{tag}_negative_layer_distances": np.stack(neg_d),
    }


def placement(oof: dict[str, npt.NDArray[Any]], tag: str) -> dict[str, Any]:
    """Where each negative falls among the skin photos (percentile; per layer: median over
    fold models; combined: per fold model, cross-fitted)."""
    skin = oof[f"{tag}_layer_distances"]
    neg = oof[f"{tag}_negative_layer_distances"]
    names = [str(n) for n in oof["negative_names"]]
    scores, neg_scores = cross_fitted(skin, oof["folds"].astype(np.int64), neg)
    assert neg_scores is not None
    per_layer = {
        str(layer): {
            name: round(float(np.median([np.mean(skin[:, j] < d[i, j]) for d in neg])) * 100, 2)
            for i, name in enumerate(names)
        }
        for j, layer in enumerate(oof["layer_names"])
    }
    combined = {
        name: [round(float(np.mean(scores < s[i])) * 100, 2) for s in neg_scores]
        for i, name in enumerate(names)
    }
    return {"tag": tag, "combined": combined, "per_layer": per_layer}


def add_to_oof(
    oof_path: Path, data: Path, shared: Path, work_dir: Path, tag: str
) -> dict[str, Any]:
    """Compute the arrays from the kept fold models and add them to `oof_path`."""
    from service.images import load_rgb
    from service.training.cv import all_photos
    from service.training.cv_negatives import negative_images

    with np.load(oof_path, allow_pickle=False) as stored:
        oof = {key: stored[key] for key in stored.files}
    items = all_photos(data)
    names = [str(n) for n in oof["negative_names"]]
    negatives = negative_images(shared, load_rgb(items[0].path))
    if names != list(negatives):
        raise SystemExit("the OOF file's negatives differ from these: re-run the CV to re-assemble")
    imgsz = json.loads((work_dir / "plan.json").read_text())["recipe"]["imgsz"]
    oof.update(
        layer_arrays(
            [i.path for i in items],
            oof["labels"].astype(np.int64),
            oof["folds"].astype(np.int64),
            work_dir,
            tag,
            imgsz,
            [negatives[n][1] for n in names],
        )
    )
    np.savez_compressed(oof_path, allow_pickle=False, **oof)  # type: ignore[arg-type]
    return placement(oof, tag)


def main(argv: Sequence[str] | None = None) -> int:
    from service.training.cv import chosen_tag

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", default=None, help="default: the served effnet model")
    parser.add_argument("--tag", default=None, choices=("last", "ema"), help="default: chosen")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args(argv)
    settings = Settings()
    args.name = args.name or settings.effnet_model
    args.tag = args.tag or chosen_tag(settings.models_dir / "cv" / f"{args.name}.cv.json")
    torch.set_num_threads(args.threads)
    oof_path = settings.models_dir / "cv" / f"{args.name}.oof.npz"
    report = add_to_oof(
        oof_path,
        settings.shared_dir / "data" / "skin6",
        settings.shared_dir,
        Path("build/cv") / args.name,
        args.tag,
    )
    out = oof_path.with_name(f"{args.name}.layers.json")
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["combined"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
