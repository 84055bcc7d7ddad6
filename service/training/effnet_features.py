"""Re-export a shipped EfficientNet as the two-output graph (`logits`, `features`) in place.

`python -m service.training.effnet_features [--models-dir models] [--data <shared>/data/skin6]`

The torch model is rebuilt from `<name>.pt` (sha256 checked against the card). The new graph's
logits must match the shipped ONNX on real val photos (max |diff| ≤ 1e-5) and the val top-1 and
macro-F1 recomputed through the serving classifier must equal the card's; only then are the
ONNX file, the card (`weights.onnx_sha256`, `outputs`) and the ensemble card's member hash
replaced. Metrics and calibration are kept: the logits are the same.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.evaluation.dataset import file_sha256, find_manifest, list_labelled_images
from service.evaluation.metrics import classification_metrics
from service.images import load_rgb
from service.pipeline.backends import ENSEMBLE_CARD, card_path
from service.pipeline.classifier import OnnxClassifier, softmax
from service.pipeline.model_card import ModelCard, write_card
from service.settings import Settings
from service.training.effnet import EffnetRecipe, build_model, cache_eval_images
from service.training.onnx_export import (
    FEATURES_NAME,
    OUTPUT_NAME,
    export_onnx,
    onnx_parity,
    serving_graph,
)

PARITY_TOLERANCE = 1e-5
PARITY_IMAGES = 16


def load_torch_model(card: ModelCard) -> torch.nn.Module:
    """The card's fine-tuned model, rebuilt with `build_model` and its `.pt` state_dict."""
    weights = card.raw["weights"]
    pt = card.path.parent / str(weights["pt"])
    if file_sha256(pt) != weights["pt_sha256"]:
        raise ValueError(f"{pt.name}: sha256 differs from the card")
    arch = card.raw.get("training", {}).get("recipe", {}).get("arch", EffnetRecipe.arch)
    model = build_model(len(card.classes), EffnetRecipe(imgsz=card.imgsz, arch=arch))
    model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    return model.eval()


def serving_model(card: ModelCard) -> torch.nn.Module:
    """The torch module that the card's ONNX graph computes: logits and, if the card lists
    them, the features (pooled, or multi-layer per `recipe.features`), flip-averaged when its
    weights variant (`training.recipe.weights`) says `+flip` (`cv_final`)."""
    recipe = card.raw.get("training", {}).get("recipe", {})
    return serving_graph(
        load_torch_model(card),
        with_features=FEATURES_NAME in card.outputs,
        flip_tta=str(recipe.get("weights", "")).endswith("+flip"),
        tapped=recipe.get("features", {}).get("kind") == "multi-layer gate features",
    ).eval()


def with_outputs(raw: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    """A copy of a card with `outputs` set, placed right after `output`."""
    result: dict[str, Any] = {}
    for key, value in raw.items():
        if key != "outputs":
            result[key] = value
        if key == "output":
            result["outputs"] = outputs
    return result if "outputs" in result else {**result, "outputs": outputs}


def val_metrics(classifier: OnnxClassifier, paths: Sequence[Path], labels: Sequence[int]) -> Any:
    """Calibrated top-1 / macro-F1 etc. of the served model on the given photos."""
    logits = np.concatenate(
        [
            classifier.logits([load_rgb(p) for p in paths[i : i + 32]])
            for i in range(0, len(paths), 32)
        ]
    )
    probs = softmax(logits, classifier.card.temperature)
    return classification_metrics(probs, np.asarray(labels, dtype=np.int64), classifier.classes)


def update_ensemble_card(models_dir: Path, old_sha: str, new_sha: str) -> bool:
    """Point the ensemble card's member entry (and its combined hash) at the new file."""
    path = models_dir / ENSEMBLE_CARD
    if not path.is_file():
        return False
    card = ModelCard.load(path).raw
    members = card.get("members", [])
    if old_sha not in [m.get("onnx_sha256") for m in members]:
        return False
    for member in members:
        if member.get("onnx_sha256") == old_sha:
            member["onnx_sha256"] = new_sha
    joined = "".join(str(m["onnx_sha256"]) for m in members)
    card["sha256"] = hashlib.sha256(joined.encode()).hexdigest()
    write_card(path, card)
    return True


def reexport_with_features(card_file: Path, data: Path) -> dict[str, Any]:
    """Replace `card_file`'s ONNX by the two-output graph after the checks in the module doc."""
    card = ModelCard.load(card_file)
    if FEATURES_NAME in card.outputs:
        raise SystemExit(f"{card.name} already outputs {FEATURES_NAME}: nothing to re-export")
    old = OnnxClassifier(card)
    model = load_torch_model(card)
    val = list_labelled_images(data / "val", card.classes, find_manifest(data))
    paths = [item.path for item in val]
    sample = [load_rgb(p) for p in paths[:: max(1, len(paths) // PARITY_IMAGES)][:PARITY_IMAGES]]
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / card.onnx_path.name
        export_onnx(model, staged, card.imgsz, with_features=True)
        torch_diff = onnx_parity(model, staged, cache_eval_images(paths[:8], card.imgsz))
        staged_card = Path(tmp) / card_file.name
        raw = with_outputs(card.raw, [OUTPUT_NAME, FEATURES_NAME])
        raw["weights"] = {**raw["weights"], "onnx_sha256": file_sha256(staged)}
        write_card(staged_card, raw)
        new = OnnxClassifier(ModelCard.load(staged_card))
        new_logits, features = new.forward(sample)
        diff = float(np.max(np.abs(new_logits - old.logits(sample))))
        if diff > PARITY_TOLERANCE or features is None:
            raise ValueError(f"two-output graph differs from the shipped one by {diff:.2e}")
        metrics = val_metrics(new, paths, [item.label for item in val])
        shipped = card.raw.get("metrics", {}).get("val", {})
        for key in ("top1", "macro_f1"):
            if key in shipped and abs(metrics[key] - shipped[key]) > 1e-9:
                raise ValueError(f"val {key} {metrics[key]} != card {shipped[key]}")
        card.onnx_path.write_bytes(staged.read_bytes())
    write_card(card_file, raw)
    ensemble = update_ensemble_card(
        card_file.parent, card.onnx_sha256, raw["weights"]["onnx_sha256"]
    )
    return {
        "max_abs_logit_diff_vs_shipped_onnx": diff,
        "max_abs_logit_diff_vs_torch": torch_diff,
        "feature_dim": int(features.shape[1]),
        "val_top1": metrics["top1"],
        "val_macro_f1": metrics["macro_f1"],
        "onnx_sha256": raw["weights"]["onnx_sha256"],
        "ensemble_card_updated": ensemble,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m service.training.effnet_features`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings()
    if args.models_dir is not None:
        settings = settings.model_copy(update={"models_dir": args.models_dir})
    data = args.data or settings.shared_dir / "data" / "skin6"
    print(reexport_with_features(card_path(settings, "effnet"), data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
