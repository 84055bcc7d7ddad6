"""Re-link the ensemble card and its gate/triage entries to a retrained member: a new
EfficientNet (`cv_final`) or YOLO student (`yolo_final`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from service.pipeline.backends import ENSEMBLE_CARD
from service.pipeline.classifier import FEATURES_OUTPUT, ensemble_info
from service.pipeline.domain import ModelInfo
from service.pipeline.gate_config import FeatureThreshold, GateConfig
from service.pipeline.model_card import ModelCard, write_card
from service.pipeline.triage_config import TriageConfig

ENSEMBLE_NOTE = (
    "Not cross-validated since a member changed: the weights, temperature and figures fitted "
    "with the old member are dropped (plain mean, temperature 1) and it is never the default "
    "until `python -m service.training.ensemble_ship` fits them again out of fold. Its feature "
    "gate is its feature member's own."
)


def relink_ensemble(models_dir: Path, member: ModelCard, by_name_only: bool = False) -> bool:
    """Point the ensemble card at the retrained `member` and re-key its gate entries (the
    member it replaces: the one of that name, else — unless `by_name_only` — the only
    EfficientNet).

    The ensemble's temperature, weights and figures were fitted with the old member: all are
    dropped (see `ENSEMBLE_NOTE`); `ensemble_ship` fits them again out of fold. False when
    there is no card or no member to replace.
    """
    path = models_dir / ENSEMBLE_CARD
    if not path.is_file():
        return False
    card = ModelCard.load(path).raw
    members = card.get("members", [])
    replaced = _replaced_members(members, member.name, by_name_only)
    if not replaced:
        return False
    for entry in replaced:
        entry.update(
            name=member.name,
            card=member.path.name,
            version=member.raw["version"],
            onnx_sha256=member.onnx_sha256,
            temperature=member.temperature,
        )
        for stale in ("val_macro_f1", "val_top1", "oof_macro_f1", "oof_macro_f1_ci95"):
            entry.pop(stale, None)
    card.pop("weights", None)  # fitted with the old member's predictions
    old_sha = str(card["sha256"])
    identity = ensemble_info(
        [
            ModelInfo(str(m["name"]), str(m.get("version", "")), str(m["onnx_sha256"]))
            for m in members
        ]
    )
    card["sha256"] = identity.sha256
    for stale in ("triage", "note"):  # fitted on, or written for, the old mixture
        card.pop(stale, None)
    card["calibration"] = {"method": "none (see note)", "temperature": 1.0}
    card["metrics"] = {"note": ENSEMBLE_NOTE}
    write_card(path, card)
    config = GateConfig.load(models_dir)
    # the energy bar was fitted for the old mixture; the feature gate is the feature member's
    ood = {k: v for k, v in config.ood.items() if k != "ensemble"}
    features = {k: v for k, v in config.features.items() if k != "ensemble"}
    own = _feature_entry_of_source(models_dir, members, config)
    if own is not None:
        features["ensemble"] = replace(own, model_name=identity.name, model_sha256=identity.sha256)
    replace(config, ood=ood, features=features).save(models_dir)
    triage = TriageConfig.load(models_dir)  # fitted on the old (or an older) mixture: gone

    def kept(key: str, sha: str) -> bool:
        return key != "ensemble" and sha != old_sha

    replace(
        triage,
        thresholds={k: v for k, v in triage.thresholds.items() if kept(k, v.model_sha256)},
        conformal={k: v for k, v in triage.conformal.items() if kept(k, v.model_sha256)},
    ).save(models_dir)
    return True


def _feature_entry_of_source(
    models_dir: Path, members: list[dict[str, Any]], config: GateConfig
) -> FeatureThreshold | None:
    """The own feature entry of the first member with features (the one the gate measures
    with, `ood.feature_source`), None when it has none."""
    for member in members:
        path = models_dir / Path(str(member.get("card", ""))).name
        if not path.is_file():  # a member that is not shipped here has no features to lend
            continue
        card = ModelCard.load(path)
        if FEATURES_OUTPUT in card.outputs:
            return config.own_features(card.onnx_sha256)
    return None


def _replaced_members(
    members: list[dict[str, Any]], name: str, by_name_only: bool
) -> list[dict[str, Any]]:
    """The member a retrained model replaces: the one of that name, else (unless
    `by_name_only`, as for an ensemble member or a YOLO student) the only member of backend
    `effnet`."""
    named = [m for m in members if m.get("name") == name]
    if named or by_name_only:
        return named
    effnets = [m for m in members if m.get("backend") == "effnet"]
    return effnets if len(effnets) == 1 else []
