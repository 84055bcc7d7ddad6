"""Multi-layer feature distances out of fold: does a stack of layers separate non-skin photos
(teeth, endoscopy) that the pooled last layer alone cannot?

`python -m service.training.cv_layers [--tag ema]` (after `skinscreen train --cv`)

For every fold model, the channel means and standard deviations of a few intermediate blocks
(`TAPS`) and the pooled last layer are taken for its training photos, its held-out photos and
the negatives. Per layer: the Mahalanobis distance to the nearest class (class means and
covariance from the fold's training photos, `feature_ood`). Combined: the largest standardised
log-distance over layers, each layer standardised by the held-out distances of the *other*
folds (Lee et al. 2018 combine layers too). Reported, cross-fitted: the share of skin photos
over each percentile of the combined score, and where every negative falls, per fold model.
Writes `models/cv/<name>.layers.json`; nothing ships from it.
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
from torch import nn

from service.images import load_rgb
from service.pipeline.domain import CLASSES
from service.pipeline.feature_ood import fit_feature_distance
from service.pipeline.preprocess import classify_tensor
from service.settings import Settings
from service.training.cv import DEFAULT_NAME, all_photos
from service.training.cv_negatives import negative_images
from service.training.effnet_data import cache_eval_images
from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD, EffnetRecipe, build_model

#: EfficientNet-Lite0 blocks whose outputs are tapped (24, 80, 112, 192 and 320 channels).
TAPS = (2, 5, 8, 11, 15)
LAST = "last_layer"
PERCENTILES = (97.5, 99.0, 99.5, 99.8)
FloatArray = npt.NDArray[np.float64]


@torch.no_grad()
def layer_stats(model: nn.Module, images: torch.Tensor, batch: int = 64) -> dict[str, FloatArray]:
    """Per tapped block: [channel means | channel stds]; and the pooled last layer."""
    blocks = list(model.get_submodule("_blocks").children())
    caught: dict[str, torch.Tensor] = {}
    hooks = [
        blocks[t].register_forward_hook(
            lambda _m, _i, out, t=t: caught.__setitem__(
                f"block{t}", torch.cat([out.mean((2, 3)), out.std((2, 3))], 1)
            )
        )
        for t in TAPS
    ]
    rows: dict[str, list[FloatArray]] = {}
    try:
        model.eval()
        for i in range(0, len(images), batch):
            pooled = model.get_submodule("_avg_pooling")(
                model.extract_features(images[i : i + batch])  # type: ignore[operator]
            )
            caught[LAST] = pooled.flatten(1)
            for key, value in caught.items():
                rows.setdefault(key, []).append(value.double().numpy())
    finally:
        for hook in hooks:
            hook.remove()
    return {key: np.concatenate(value) for key, value in rows.items()}


def fold_distances(
    model: nn.Module,
    train: torch.Tensor,
    train_labels: npt.NDArray[np.int64],
    others: dict[str, torch.Tensor],
) -> dict[str, dict[str, FloatArray]]:
    """{set name: {layer: distances}} with class means fitted on `train`."""
    reference = layer_stats(model, train)
    fitted = {
        layer: fit_feature_distance(x, train_labels, dims=min(256, x.shape[1] - 1))
        for layer, x in reference.items()
    }
    result = {}
    for name, images in others.items():
        stats = layer_stats(model, images)
        result[name] = {layer: fitted[layer].score(stats[layer]) for layer in fitted}
    return result


def combined(
    held: dict[int, dict[str, FloatArray]], fold: int, distances: dict[str, FloatArray]
) -> FloatArray:
    """max over layers of log-distance standardised by the other folds' held-out ones."""
    scores = []
    for layer, d in distances.items():
        ref = np.log(np.concatenate([held[f][layer] for f in held if f != fold]) + 1e-9)
        scores.append((np.log(d + 1e-9) - ref.mean()) / ref.std())
    result: FloatArray = np.max(np.stack(scores), axis=0)
    return result


def evaluate(
    held: dict[int, dict[str, FloatArray]],
    negatives: dict[int, dict[str, FloatArray]],
    names: Sequence[str],
) -> dict[str, Any]:
    folds = sorted(held)
    skin = {f: combined(held, f, held[f]) for f in folds}
    neg = {f: combined(held, f, negatives[f]) for f in folds}
    report: dict[str, Any] = {"skin_over_percentile": {}, "negatives": {}, "per_layer": {}}
    for p in PERCENTILES:
        over = []
        for f in folds:  # each fold judged with a cut fitted on the other folds' scores
            cut = np.percentile(np.concatenate([skin[g] for g in folds if g != f]), p)
            over.append(skin[f] > cut)
        report["skin_over_percentile"][str(p)] = round(float(np.concatenate(over).mean()), 4)
    pooled = np.concatenate([skin[f] for f in folds])
    for j, name in enumerate(names):
        report["negatives"][name] = [
            round(float(np.mean(pooled < neg[f][j]) * 100), 2) for f in folds
        ]
    for layer in held[folds[0]]:
        ref = np.concatenate([held[f][layer] for f in folds])
        report["per_layer"][layer] = {
            name: round(
                float(np.median([np.mean(ref < negatives[f][layer][j]) * 100 for f in folds])), 2
            )
            for j, name in enumerate(names)
        }
    return report


def run(data: Path, shared: Path, work_dir: Path, tag: str, imgsz: int) -> dict[str, Any]:
    items = all_photos(data)
    labels = np.asarray([i.label for i in items], dtype=np.int64)
    folds = np.asarray(json.loads((work_dir / "plan.json").read_text())["folds"])
    negatives = negative_images(shared, load_rgb(items[0].path))
    names = list(negatives)
    neg_batch = torch.from_numpy(
        np.stack(
            [
                classify_tensor(img, imgsz, IMAGENET_MEAN, IMAGENET_STD)
                for _, img in negatives.values()
            ]
        )
    )
    held_d: dict[int, dict[str, FloatArray]] = {}
    neg_d: dict[int, dict[str, FloatArray]] = {}
    for fold in range(int(folds.max()) + 1):
        model = build_model(len(CLASSES), EffnetRecipe(imgsz=imgsz))
        model.load_state_dict(torch.load(work_dir / f"fold{fold}.{tag}.pt", map_location="cpu"))
        train_idx = np.flatnonzero(folds != fold)
        held_idx = np.flatnonzero(folds == fold)
        train = cache_eval_images([items[i].path for i in train_idx], imgsz)
        held = cache_eval_images([items[i].path for i in held_idx], imgsz)
        out = fold_distances(model, train, labels[train_idx], {"held": held, "neg": neg_batch})
        held_d[fold], neg_d[fold] = out["held"], out["neg"]
    return {"tag": tag, "taps": list(TAPS), **evaluate(held_d, neg_d, names)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--tag", default="ema", choices=("last", "ema"))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args(argv)
    settings = Settings()
    torch.set_num_threads(args.threads)
    work_dir = Path("build/cv") / args.name
    imgsz = json.loads((work_dir / "plan.json").read_text())["recipe"]["imgsz"]
    report = run(
        settings.shared_dir / "data" / "skin6", settings.shared_dir, work_dir, args.tag, imgsz
    )
    out = settings.models_dir / "cv" / f"{args.name}.layers.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
