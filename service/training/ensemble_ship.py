"""Ship a weighted ensemble fitted out of fold: its OOF file, its card, its gate/triage entries.

`python -m service.training.ensemble_ship CARD=OOF[:variant] CARD=OOF[:variant] ...`, e.g.
`skinscreen-efficientnet-lite0.json=models/cv/skinscreen-efficientnet-lite0.oof.npz:ema+flip`.

Each member is a card in `models_dir` — the final model of a CV run (`cv_final`, `--member`
for a second EfficientNet) — with that run's OOF file and the variant the card serves (its
temperature must be the one fitted on those OOF logits). The ensemble's own OOF file
(`models/cv/skinscreen-ensemble.oof.npz`) holds the cross-fitted mixture (each fold mixed with
member temperatures and weights fitted on the other folds) and the gate distances of its
feature member (the first with features, the one the served gate measures with); `cv_fit`
judges it like a single model — conformal sets, gate, triage — and the card, `gate.json` and
`triage.json` get its entries: weights and temperature fitted on all OOF predictions, every
threshold from that report. `default` serves the ensemble only if it beats its best member
out of fold (`beats_best_single`) and has the best CV macro-F1 of the served backends.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.evaluation.calibration import fit_temperature
from service.evaluation.cv_metrics import Oof
from service.evaluation.ensemble_cv import (
    cross_fitted_probabilities,
    fit_ensemble,
    member_figures,
)
from service.pipeline.backends import ENSEMBLE_CARD
from service.pipeline.classifier import FEATURES_OUTPUT, ensemble_info
from service.pipeline.domain import CLASSES
from service.pipeline.gate_config import GateConfig
from service.pipeline.model_card import ModelCard, write_card
from service.pipeline.ood import logsumexp
from service.settings import Settings
from service.training.cv_fit import borrowed_gate, fit_all, read_oof, variant_logits
from service.training.cv_gate import GatePercentiles
from service.training.oof_entries import (
    OOF_NOTE,
    energy_bars,
    energy_entry,
    feature_entry,
    save_gate_entries,
    save_triage_entries,
)
from service.training.shipping import dataset_fingerprint

#: How far a card's temperature may sit from the one its OOF logits give (relative).
TEMPERATURE_TOLERANCE = 0.02
#: The weight grid grows as 21^members: more than this is not searched.
MAX_MEMBERS = 4


@dataclass(frozen=True)
class Member:
    card: ModelCard
    arrays: dict[str, npt.NDArray[Any]]
    variant: str

    @property
    def logits(self) -> npt.NDArray[np.float64]:
        return variant_logits(self.arrays, self.variant, self.card.name)

    @property
    def has_features(self) -> bool:
        return FEATURES_OUTPUT in self.card.outputs


def load_member(spec: str, models_dir: Path) -> Member:
    """`CARD=OOF[:variant]` → the card (a file name in `models_dir`) and its OOF predictions.
    The variant is the one the card says it serves (`metrics.cross_validated.variant`); one
    named here must be that one."""
    card_name, _, rest = spec.partition("=")
    oof_path, _, variant = rest.partition(":")
    if Path(card_name).name != card_name or not oof_path:
        raise SystemExit(f"{spec!r}: expected CARD=OOF[:variant], CARD a file in {models_dir}")
    card = ModelCard.load(models_dir / card_name)
    served = card.raw.get("metrics", {}).get("cross_validated", {}).get("variant")
    if variant and served and variant != served:
        raise SystemExit(f"{card_name} serves the {served} variant, not {variant}")
    variant = variant or served
    if not variant:
        raise SystemExit(f"{card_name} names no CV variant: give it as CARD=OOF:variant")
    member = Member(card, read_oof(oof_path), variant)
    variant_logits(member.arrays, variant, oof_path)  # refuses a variant the file lacks
    fitted = fit_temperature(member.logits, member.arrays["labels"].astype(np.int64))
    if abs(math.log(member.card.temperature / fitted)) > TEMPERATURE_TOLERANCE:
        raise SystemExit(
            f"{card_name}: temperature {member.card.temperature} is not the {fitted:.4f} of "
            f"{oof_path}:{member.variant} — is it the final model of that CV run and variant?"
        )
    return member


def ensemble_oof(
    members: Sequence[Member],
) -> tuple[dict[str, npt.NDArray[Any]], Oof, list[list[float]]]:
    """The ensemble's OOF arrays and the OOF view of the photos.

    Its one variant (`last`) holds the cross-fitted calibrated log mixture: fold k mixed with member
    temperatures, weights and ensemble temperature all fitted on the other folds (so `cv_fit`
    judges an honestly nested estimate; its own temperature on top comes out ≈ 1). The gate
    arrays are the feature member's: the served gate measures with its features. Also the
    OOF view of the photos and each fold's weights.
    """
    if not 2 <= len(members) <= MAX_MEMBERS:
        raise SystemExit(f"an ensemble takes 2 to {MAX_MEMBERS} members")
    first = members[0].arrays
    for member in members[1:]:
        same = all(
            member.arrays[k].shape == first[k].shape and (member.arrays[k] == first[k]).all()
            for k in ("files", "folds", "labels")
        )
        if not same:
            raise SystemExit(f"{member.card.name}: other photos or folds than the first member")
    source = next((m for m in members if m.has_features), None)
    if source is None:
        raise SystemExit("no member has features: the ensemble's gate would have none")
    view = Oof(
        members[0].logits,
        first["labels"].astype(np.int64),
        [str(g) for g in first["groups"]],
        first["folds"].astype(np.int64),
    )
    probs, fold_weights = cross_fitted_probabilities([m.logits for m in members], view)
    calibrated = np.log(np.clip(probs, 1e-12, 1.0))
    arrays = {k: first[k] for k in ("files", "labels", "groups", "folds")}
    arrays["last_logits"] = calibrated.astype(np.float32)
    arrays.update(borrowed_gate(source.arrays, source.variant.split("+")[0]))
    return arrays, view, fold_weights


def ship_ensemble_oof(
    members: Sequence[Member],
    models_dir: Path,
    data: Path,
    shared_dir: Path,
    work_dir: Path,
    version: str,
) -> dict[str, Any]:
    """Write the ensemble's OOF file and report, its card and its gate/triage entries (the
    card last: a refusal leaves the shipped ensemble as it was)."""
    source = next((m for m in members if m.has_features), None)
    own = GateConfig.load(models_dir).own_features(source.card.onnx_sha256) if source else None
    if source is not None and own is None:
        raise SystemExit(f"{source.card.name} has no feature gate entry of its own in gate.json")
    arrays, view, fold_weights = ensemble_oof(members)
    cv_dir = models_dir / "cv"
    cv_dir.mkdir(parents=True, exist_ok=True)
    oof_path = cv_dir / f"{Path(ENSEMBLE_CARD).stem}.oof.npz"
    np.savez_compressed(oof_path, allow_pickle=False, **arrays)
    work_dir.mkdir(parents=True, exist_ok=True)
    report = fit_all(oof_path, work_dir, data, shared_dir, GatePercentiles())
    logits = [m.logits for m in members]
    _, weights, temperature = fit_ensemble(
        logits, view.labels, [m.card.temperature for m in members]
    )
    # energy as the served ensemble scores it (the OOF file's log-probabilities have none)
    energy = sum(w * logsumexp(lg) for w, lg in zip(weights, logits, strict=True))
    report["energy"] = energy_bars(np.asarray(energy))
    identity = ensemble_info([m.card.info for m in members])
    name, digest = identity.name, identity.sha256
    assert source is not None and own is not None  # ensemble_oof refuses a featureless one
    feature = feature_entry(
        report, name, digest, own.features_sha256, own.artefact, own.artefact_sha256
    )
    if feature.method != own.method:  # e.g. a variant without the multi-layer distances
        raise SystemExit(
            f"the OOF gate distances are {feature.method}, {source.card.name}'s artefact is "
            f"{own.method}: the thresholds would not fit the served distances"
        )
    oof_path.with_name(oof_path.name.replace(".oof.npz", ".cv.json")).write_text(
        json.dumps(report, indent=1) + "\n"
    )
    singles = member_figures(logits, view, CLASSES)
    figures = {k: v for k, v in report["variants"]["last"].items() if k != "fold_temperatures"}
    best_single = max(s["macro_f1"] for s in singles)
    card: dict[str, Any] = {
        "name": Path(ENSEMBLE_CARD).stem,
        "version": version,
        "architecture": "ensemble: weighted mean of the members' temperature-calibrated "
        "probabilities, sharpened by one temperature",
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "classes": list(CLASSES),
        "sha256": digest,
        "members": [_entry(m, s) for m, s in zip(members, singles, strict=True)],
        "weights": [float(w) for w in weights],
        "data": {"path": str(data), **dataset_fingerprint(data)},
        "calibration": {
            "method": "members' own temperatures, weights on a 0.05 simplex grid and one "
            "ensemble temperature, all by NLL on the OOF predictions of the CV",
            "temperature": temperature,
            "ece_15_oof_cross_fitted": figures["ece_15"],
        },
        "metrics": {
            "cross_validated": {
                "protocol": OOF_NOTE + "; weights and temperatures cross-fitted",
                **figures,
                "fold_weights": fold_weights,
                "best_single_member_macro_f1": best_single,
                "beats_best_single": bool(figures["macro_f1"] > best_single),
            },
            "conformal": report["conformal"],
            "gate": {k: v for k, v in report["gate"].items() if k != "negatives"},
        },
    }
    ood = energy_entry(report["energy"], name, digest)
    save_gate_entries(models_dir, "ensemble", feature, ood)
    save_triage_entries(models_dir, report, "ensemble", name, digest)
    write_card(models_dir / ENSEMBLE_CARD, card)
    return card


def _entry(member: Member, judged: dict[str, Any]) -> dict[str, Any]:
    return {
        # `effnet` for a model with gate features; re-linking falls back to that key
        "backend": "effnet" if member.has_features else "yolo",
        "name": member.card.name,
        "version": str(member.card.raw["version"]),
        "card": member.card.path.name,
        "onnx_sha256": member.card.onnx_sha256,
        "temperature": member.card.temperature,
        "variant": member.variant,
        "oof_macro_f1": judged["macro_f1"],
        "oof_macro_f1_ci95": judged["macro_f1_ci95"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("members", nargs="+", help="CARD=OOF[:variant], in the ensemble's order")
    parser.add_argument("--version", default="2.0.0")
    parser.add_argument("--data", type=Path, default=None, help="default: <shared>/data/skin6")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--work-dir", type=Path, default=Path("build/cv/skinscreen-ensemble"))
    args = parser.parse_args(argv)
    settings = Settings()
    models_dir = args.models_dir or settings.models_dir
    members = [load_member(spec, models_dir) for spec in args.members]
    data = args.data or settings.shared_dir / "data" / "skin6"
    card = ship_ensemble_oof(
        members, models_dir, data, settings.shared_dir, args.work_dir, args.version
    )
    figures = card["metrics"]["cross_validated"]
    print(
        f"ensemble: weights {card['weights']}, T {card['calibration']['temperature']:.4f}, "
        f"OOF macro-F1 {figures['macro_f1']} {figures['macro_f1_ci95']} (best single member "
        f"{figures['best_single_member_macro_f1']}; beats it: {figures['beats_best_single']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
