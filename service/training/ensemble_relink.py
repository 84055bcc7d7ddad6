"""Re-link the ensemble card and its gate entries to a new EfficientNet (`cv_final`)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.pipeline.backends import ENSEMBLE_CARD
from service.pipeline.gate_config import GateConfig
from service.pipeline.model_card import ModelCard, write_card

ENSEMBLE_NOTE = (
    "Not cross-validated: its EfficientNet member now trains on every photo (val included) "
    "and the YOLO member has no out-of-fold predictions yet, so no val or CV figure is honest "
    "for the ensemble and it is never the default. Its mean is left unsharpened (temperature "
    "1); its feature gate is the EfficientNet member's, refitted on OOF distances."
)


def relink_ensemble(models_dir: Path, effnet: ModelCard) -> bool:
    """Point the ensemble card at the new EfficientNet and re-key its gate entries.

    The ensemble's temperature, weights and figures were fitted with the old member: all are
    dropped (see `ENSEMBLE_NOTE`); `ensemble_ship` fits them again out of fold. False when
    there is no card or no member to replace.
    """
    path = models_dir / ENSEMBLE_CARD
    if not path.is_file():
        return False
    card = ModelCard.load(path).raw
    members = card.get("members", [])
    replaced = _effnet_members(members, effnet.name)
    if not replaced:
        return False
    for member in replaced:
        member.update(
            name=effnet.name,
            card=effnet.path.name,
            version=effnet.raw["version"],
            onnx_sha256=effnet.onnx_sha256,
            temperature=effnet.temperature,
        )
        member.pop("val_macro_f1", None)
        member.pop("val_top1", None)
    card.pop("weights", None)  # fitted with the old member's predictions
    old_sha = str(card["sha256"])
    card["sha256"] = hashlib.sha256(
        "".join(str(m["onnx_sha256"]) for m in members).encode()
    ).hexdigest()
    card["calibration"] = {"method": "none (see note)", "temperature": 1.0}
    card["metrics"] = {"note": ENSEMBLE_NOTE}
    write_card(path, card)
    config = GateConfig.load(models_dir)
    ood, features = dict(config.ood), dict(config.features)
    if "ensemble" in ood and ood["ensemble"].model_sha256 == old_sha:
        ood["ensemble"] = replace(
            ood["ensemble"],
            model_sha256=card["sha256"],
            fitted_on=ood["ensemble"].fitted_on + " (v1 members; superseded by the features)",
        )
    if "effnet" in features:
        ensemble_name = f"ensemble({'+'.join(str(m['name']) for m in members)})"
        features["ensemble"] = replace(
            features["effnet"], model_name=ensemble_name, model_sha256=card["sha256"]
        )
    config = replace(config, ood=ood, features=features)
    config.save(models_dir)
    return True


def _effnet_members(members: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The member the new EfficientNet replaces: the one of that name, else the only member
    of backend `effnet` (an ensemble of two EfficientNets re-links by name only)."""
    named = [m for m in members if m.get("name") == name]
    if named:
        return named
    effnets = [m for m in members if m.get("backend") == "effnet"]
    return effnets if len(effnets) == 1 else []
