"""`gate.json` and `triage.json` entries for one served model (a single one or an ensemble),
built from its OOF report (`cv_fit`): every threshold there was fitted on out-of-fold
predictions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.pipeline.gate_config import FeatureThreshold, GateConfig, OodScore, OodThreshold
from service.pipeline.triage_config import ConformalThreshold, MalignancyThreshold, TriageConfig
from service.training.triage_threshold import TARGET

OOF_NOTE = "5-fold photo-group cross-validation over skin6 train + val (out-of-fold)"


def feature_entry(
    report: dict[str, Any],
    model_name: str,
    model_sha256: str,
    features_sha256: str,
    artefact: str,
    artefact_sha256: str,
) -> FeatureThreshold:
    """The feature-distance thresholds of the report's gate section (fitted on all OOF)."""
    gate = report["gate"]
    fitted, percentiles = gate["fitted_on_all"], gate["percentiles"]
    return FeatureThreshold(
        threshold=round(fitted["reject"], 4),
        soft_threshold=round(fitted["soft"], 4),
        model_name=model_name,
        model_sha256=model_sha256,
        features_sha256=features_sha256,
        artefact=artefact,
        artefact_sha256=artefact_sha256,
        percentile=percentiles["reject"],
        soft_percentile=percentiles["soft"],
        method="layered-mahalanobis" if gate.get("distance") == "layered" else "mahalanobis",
        fitted_on=f"thresholds: OOF feature distances, {OOF_NOTE}; class means: all photos",
        unusual_threshold=round(fitted["unusual"], 4),
        unusual_few_skin_threshold=round(fitted["unusual_few_skin"], 4),
    )


def energy_bars(energy: npt.NDArray[np.float64]) -> dict[str, float]:
    """OOD-score bars (energy, or max-logit for a graph that outputs probabilities) at the 1st
    (reject) and 10th (soft) percentiles of skin photos."""
    return {
        "threshold": round(float(np.percentile(energy, 1.0)), 5),
        "soft_threshold": round(float(np.percentile(energy, 10.0)), 5),
        "percentile": 1.0,
        "soft_percentile": 10.0,
    }


def energy_entry(
    energy: dict[str, Any], model_name: str, model_sha256: str, score: OodScore = "energy"
) -> OodThreshold:
    """The OOD-score thresholds (`energy`: threshold, soft_threshold and their percentiles, of
    the energy score or, for a graph that outputs probabilities, of `max_logit`)."""
    return OodThreshold(
        score=score,
        threshold=energy["threshold"],
        soft_threshold=energy["soft_threshold"],
        model_name=model_name,
        model_sha256=model_sha256,
        percentile=energy["percentile"],
        soft_percentile=energy["soft_percentile"],
        fitted_on=f"OOF {score.replace('_', ' ')}, {OOF_NOTE}",
    )


def triage_entries(
    report: dict[str, Any], model_name: str, model_sha256: str
) -> tuple[MalignancyThreshold, ConformalThreshold]:
    """The malignancy threshold and the conformal threshold of the report."""
    malignancy = MalignancyThreshold(
        model_name=model_name,
        model_sha256=model_sha256,
        threshold=report["triage"]["threshold"],
        target_sensitivity=TARGET,
        fitted_on=f"calibrated OOF probabilities, {OOF_NOTE}",
        cross_validated={"cross_fitted": report["triage"]["cross_fitted"]},
    )
    conformal = ConformalThreshold(
        model_name=model_name,
        model_sha256=model_sha256,
        threshold=report["conformal"]["threshold"],
        coverage_target=report["conformal"]["coverage_target"],
        fitted_on=f"calibrated OOF probabilities, {OOF_NOTE}",
        cross_validated={k: v for k, v in report["conformal"].items() if k not in ("threshold",)},
    )
    return malignancy, conformal


def card_cv_sections(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A card's `calibration` and `metrics` for the final model of a CV run: the report's
    chosen variant's figures with intervals, every variant's headline figures, the conformal
    and gate sections — the shipped weights have no held-out photos left to score them on."""
    variant = report["chosen"]
    figures = report["variants"][variant]
    calibration = {
        "method": "temperature scaling fitted on the OOF logits of the CV (NLL)",
        "temperature": report["temperature"],
        "ece_15_oof_cross_fitted": figures["ece_15"],
        "ece_15_oof_cross_fitted_ci95": figures["ece_15_ci95"],
    }
    headline = ("top1", "top1_ci95", "macro_f1", "macro_f1_ci95", "ece_15")
    metrics = {
        "cross_validated": {
            "protocol": OOF_NOTE,
            "variant": variant,
            **{k: v for k, v in figures.items() if k != "fold_temperatures"},
            "variants": {v: {k: f[k] for k in headline} for v, f in report["variants"].items()},
        },
        "conformal": report["conformal"],
        "gate": {k: v for k, v in report["gate"].items() if k != "negatives"},
    }
    return calibration, metrics


def save_gate_entries(
    models_dir: Path, entry: str, feature: FeatureThreshold, ood: OodThreshold
) -> None:
    """`gate.json` with `entry`'s feature and OOD-score thresholds replaced."""
    config = GateConfig.load(models_dir)
    replace(
        config, ood={**config.ood, entry: ood}, features={**config.features, entry: feature}
    ).save(models_dir)


def save_triage_entries(
    models_dir: Path, report: dict[str, Any], entry: str, model_name: str, model_sha256: str
) -> None:
    """`triage.json` with `entry`'s malignancy and conformal thresholds from `report`."""
    triage = TriageConfig.load(models_dir)
    malignancy, conformal = triage_entries(report, model_name, model_sha256)
    replace(
        triage,
        thresholds={**triage.thresholds, entry: malignancy},
        conformal={**triage.conformal, entry: conformal},
    ).save(models_dir)
