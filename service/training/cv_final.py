"""Train the shipped EfficientNet on every photo with the CV-chosen settings, and ship it with
every threshold fitted on the out-of-fold predictions.

`python -m service.training.cv_final [--name <the served effnet model>] [--version 2.0.0]`

Reads `models/cv/<name>.cv.json` (`cv_fit`): the chosen weight variant (last epoch or EMA,
with or without flip test-time augmentation, which is then built into the ONNX graph), the
temperature, the conformal threshold, the gate v2 feature thresholds and the malignancy
threshold, all fitted on OOF predictions. The model trains on skin6 train + val (2,026 photos)
for the recipe's fixed epochs (resumable). Its card carries the CV figures with intervals — the
shipped weights have no held-out photos left, the CV figures are the estimate — and
`gate.json`, `triage.json` and the feature-distance artefact are updated for its sha256.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.evaluation.dataset import file_sha256
from service.pipeline.domain import CLASSES
from service.pipeline.feature_ood import fit_feature_distance
from service.pipeline.gate_config import GateConfig
from service.pipeline.model_card import ModelCard, write_card
from service.settings import Settings
from service.training.cv import CV_RECIPE, EMA_DECAY, all_photos
from service.training.cv_fold import logits_and_features, train_fixed_schedule
from service.training.effnet_data import cache_eval_images, cache_train_images
from service.training.effnet_fit import seed_everything
from service.training.effnet_model import IMAGENET_MEAN, IMAGENET_STD, EffnetRecipe
from service.training.ensemble_relink import relink_ensemble
from service.training.layer_gate import fit_layered_distance, tapped_features
from service.training.layer_taps import layout
from service.training.onnx_export import FEATURES_NAME, OUTPUT_NAME, export_onnx, onnx_parity
from service.training.oof_entries import (
    card_cv_sections,
    energy_entry,
    feature_entry,
    save_triage_entries,
)
from service.training.shipping import ship_model


def train_final(
    data: Path, work_dir: Path, recipe: EffnetRecipe, variant: str
) -> tuple[torch.nn.Module, list[dict[str, Any]], torch.Tensor]:
    """The chosen weights trained on every photo; the log; the photos as the service sees them."""
    items = all_photos(data)
    seed_everything(recipe.seed, recipe.threads)
    images = cache_train_images([i.path for i in items], recipe.cache_edge)
    labels = torch.tensor([i.label for i in items], dtype=torch.long)
    work_dir.mkdir(parents=True, exist_ok=True)
    plan = json.dumps(
        {"files": [str(i.path) for i in items], "recipe": asdict(recipe), "ema": EMA_DECAY},
        sort_keys=True,
    )
    digest = hashlib.sha256(plan.encode()).hexdigest()[:16]
    model, ema_model, log = train_fixed_schedule(
        (images, labels),
        recipe,
        CLASSES,
        EMA_DECAY,
        work_dir / f"final-{digest}.checkpoint.pt",  # another plan never resumes this one
        recipe.seed,
        "final",
    )
    chosen = ema_model if variant.split("+")[0] == "ema" else model
    return chosen.eval(), log, cache_eval_images([i.path for i in items], recipe.imgsz)


def ship_final(
    model: torch.nn.Module,
    log: list[dict[str, Any]],
    eval_images: torch.Tensor,
    data: Path,
    models_dir: Path,
    name: str,
    version: str,
    recipe: EffnetRecipe,
    report: dict[str, Any],
    entry: str = "effnet",
) -> dict[str, Any]:
    """Export, write the card with the CV figures, and refit the gate/triage files for it
    (under `entry`: `effnet` for the served model, its own name for an ensemble member)."""
    variant = report["chosen"]
    flip = variant.endswith("+flip")
    layered = report["gate"].get("distance") == "layered"
    torch.save(model.state_dict(), models_dir / f"{name}.pt")
    onnx_path = models_dir / f"{name}.onnx"
    export_onnx(model, onnx_path, recipe.imgsz, with_features=True, flip_tta=flip, tapped=layered)
    parity = onnx_parity(model, onnx_path, eval_images[:8], flip_tta=flip, tapped=layered)
    card = ship_model(
        data=data,
        out_dir=models_dir,
        name=name,
        version=version,
        architecture=f"{recipe.arch} (ImageNet-pretrained, fine-tuned on all skin6 photos)"
        + (", flip test-time augmentation in the graph" if flip else ""),
        framework=f"torch {torch.__version__}",
        imgsz=recipe.imgsz,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        output="logits",
        outputs=(OUTPUT_NAME, FEATURES_NAME),
        recipe={
            **asdict(recipe),
            "ema_decay": EMA_DECAY,
            "weights": variant,
            "features": (
                {"kind": "multi-layer gate features", "layout": layout(model)}
                if layered
                else {"kind": "pooled last layer"}
            ),
        },
        extra_files={"pt": f"{name}.pt"},
        training_log={"epochs": log, "onnx_max_abs_diff_vs_torch": parity},
        evaluate_on_val=False,
    )
    card["training"]["data"]["photos"] = "skin6 train + val (all 2,026 photos)"
    card["training"]["data"]["splits"] = ["train", "val"]  # `skinscreen evaluate` flags them
    card["calibration"], card["metrics"] = card_cv_sections(report)
    card["created"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    write_card(models_dir / f"{name}.json", card)
    labels = np.asarray([i.label for i in all_photos(data)], dtype=np.int64)
    if layered:
        scale = {k: (v[0], v[1]) for k, v in report["gate"]["layer_log_scale"].items()}
        layers = tapped_features(model, eval_images)
        artefact = fit_layered_distance(layers, labels, layout(model), scale).to_bytes()
    else:
        pooled = logits_and_features(model, eval_images)[1]
        artefact = fit_feature_distance(pooled, labels).to_bytes()
    loaded = ModelCard.load(models_dir / f"{name}.json")
    _refit_configs(models_dir, loaded, report, artefact, entry)
    return card


def _refit_configs(
    models_dir: Path, card: ModelCard, report: dict[str, Any], artefact: bytes, entry: str
) -> None:
    """gate.json (feature + energy thresholds), triage.json and `<name>.ood.npz` (`artefact`:
    class means from the shipped model's own features of every photo) for `card`, under the
    key `entry` (`effnet`: the served model, whose features yolo borrows)."""
    model_sha = card.onnx_sha256
    artefact_name = f"{card.name}.ood.npz"
    (models_dir / artefact_name).write_bytes(artefact)
    artefact_sha = hashlib.sha256(artefact).hexdigest()
    feature = feature_entry(report, card.name, model_sha, model_sha, artefact_name, artefact_sha)
    config = GateConfig.load(models_dir)
    entries = {entry: feature}
    for backend, old in config.features.items():
        borrows = old.features_sha256 != old.model_sha256  # yolo measures with effnet's
        if entry == "effnet" and borrows and backend != "ensemble":
            entries[backend] = replace(
                feature, model_name=old.model_name, model_sha256=old.model_sha256
            )
    config = replace(
        config,
        ood={**config.ood, entry: energy_entry(report["energy"], card.name, model_sha)},
        features={**config.features, **entries},
    )
    config.save(models_dir)
    save_triage_entries(models_dir, report, entry, card.name, model_sha)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--name", default=None, help="default: the served effnet model")
    parser.add_argument("--version", default="2.0.0")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument(
        "--member",
        action="store_true",
        help="ship it as an ensemble member: its own gate/triage entries, the effnet ones kept",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    args.name = args.name or settings.effnet_model
    entry = args.name if args.member else "effnet"
    if args.models_dir is None and not args.member and args.name != settings.effnet_model:
        # gate.json / triage.json entries named `effnet` would point at weights nobody serves
        raise SystemExit(
            f"{args.name} is not the served effnet model ({settings.effnet_model}): ship it to "
            "another --models-dir, as an ensemble --member, or set SKINSCREEN_EFFNET_MODEL"
        )
    models_dir = args.models_dir or settings.models_dir
    data = args.data or settings.shared_dir / "data" / "skin6"
    report = json.loads((models_dir / "cv" / f"{args.name}.cv.json").read_text())
    recipe = EffnetRecipe(**report.get("recipe", asdict(CV_RECIPE)))
    work_dir = args.work_dir or Path("build/cv") / args.name
    model, log, images = train_final(data, work_dir / "final", recipe, report["chosen"])
    card = ship_final(
        model, log, images, data, models_dir, args.name, args.version, recipe, report, entry
    )
    # an ensemble that holds this model follows it (a member: only under its own name)
    shipped = ModelCard.load(models_dir / f"{args.name}.json")
    relink_ensemble(models_dir, shipped, by_name_only=args.member)
    for checkpoint in (work_dir / "final").glob("final-*.checkpoint.pt"):
        checkpoint.unlink()  # shipped: a later run trains afresh
    print(json.dumps({k: card[k] for k in ("name", "version", "weights")}, indent=1))
    print(f"pt sha256 {file_sha256(models_dir / f'{args.name}.pt')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
