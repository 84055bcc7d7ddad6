"""`ensemble_ship`: an ensemble of two CV-trained EfficientNets, fitted out of fold and served."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the `train` extra")
pytest.importorskip("efficientnet_lite_pytorch", reason="training needs the `train` extra")

from service.images import load_rgb
from service.pipeline.backends import (
    ENSEMBLE_CARD,
    available_backends,
    default_backend,
    load_screener,
)
from service.pipeline.gate_config import GateConfig
from service.pipeline.model_card import ModelCard
from service.pipeline.triage_config import TriageConfig
from service.settings import Settings
from service.training import cv_final, cv_fit
from service.training.cv_gate import GatePercentiles
from service.training.ensemble_relink import relink_ensemble
from service.training.ensemble_ship import load_member, ship_ensemble_oof
from tests.support.training_data import CV_RECIPE


@pytest.fixture(scope="module")
def two_members(cv_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CV's final model shipped twice: as the served effnet and as an ensemble member."""
    report = cv_fit.fit_all(
        cv_run["oof"], cv_run["work"], cv_run["data"], cv_run["shared"], GatePercentiles()
    )
    models = tmp_path_factory.mktemp("ensemble-models")
    model, log, images = cv_final.train_final(
        cv_run["data"], cv_run["work"] / "final", CV_RECIPE, report["chosen"]
    )
    for name, entry in (("member-a", "effnet"), ("member-b", "member-b")):
        cv_final.ship_final(
            model, log, images, cv_run["data"], models, name, "0.0.1", CV_RECIPE, report, entry
        )
    (models / "chosen.txt").write_text(report["chosen"])
    return models


@pytest.mark.slow
def test_an_ensemble_ships_with_oof_weights_and_thresholds(
    cv_run: dict[str, Any], two_members: Path, tmp_path: Path
) -> None:
    models, chosen = two_members, (two_members / "chosen.txt").read_text()
    a, b = (ModelCard.load(models / f"member-{x}.json") for x in "ab")
    config = GateConfig.load(models)
    # a member keeps the served model's entries and gets its own
    assert config.features["effnet"].model_sha256 == a.onnx_sha256
    assert config.features["member-b"].model_sha256 == b.onnx_sha256

    members = [load_member(f"member-{x}.json={cv_run['oof']}:{chosen}", models) for x in "ab"]
    card = ship_ensemble_oof(
        members, models, cv_run["data"], cv_run["shared"], tmp_path / "work", "0.0.1"
    )

    digest = hashlib.sha256((a.onnx_sha256 + b.onnx_sha256).encode()).hexdigest()
    on_disk = json.loads((models / ENSEMBLE_CARD).read_text())
    assert on_disk["sha256"] == digest == card["sha256"]
    assert [m["card"] for m in on_disk["members"]] == ["member-a.json", "member-b.json"]
    assert len(on_disk["weights"]) == 2 and sum(on_disk["weights"]) == pytest.approx(1.0)
    figures = on_disk["metrics"]["cross_validated"]
    assert 0 <= figures["macro_f1_ci95"][0] <= figures["macro_f1"] <= figures["macro_f1_ci95"][1]
    assert len(figures["fold_weights"]) == 2
    with (
        np.load(models / "cv" / "skinscreen-ensemble.oof.npz") as oof,
        np.load(cv_run["oof"]) as source,
    ):
        tag = chosen.split("+")[0]
        for key in ("layer_distances", "negative_layer_distances", "feature_distance"):
            np.testing.assert_array_equal(oof[f"last_{key}"], source[f"{tag}_{key}"])
        assert (oof["folds"] == source["folds"]).all()

    gate, triage = GateConfig.load(models), TriageConfig.load(models)
    feature = gate.features["ensemble"]
    assert feature.model_sha256 == digest and feature.features_sha256 == a.onnx_sha256
    assert feature.artefact == gate.features["effnet"].artefact
    assert gate.ood["ensemble"].model_sha256 == digest
    assert triage.conformal["ensemble"].threshold == on_disk["metrics"]["conformal"]["threshold"]

    settings = Settings(models_dir=models, effnet_model="member-a", yolo_model="not-shipped")
    assert available_backends(settings) == ["effnet", "ensemble"]
    beats = figures["macro_f1"] > a.raw["metrics"]["cross_validated"]["macro_f1"]
    assert default_backend(settings) == ("ensemble" if beats else "effnet")
    screener = load_screener(settings, "ensemble")
    assert screener.features is not None and screener.features[0].model_sha256 == digest
    assert screener.conformal_threshold == triage.conformal["ensemble"].threshold
    assert screener.malignancy_threshold == triage.thresholds["ensemble"].threshold
    outcome, classification = screener.screen(load_rgb(cv_run["items"][0].path))
    assert outcome.status in ("ok", "inconclusive", "rejected") and classification.label

    # a new member-b re-links only that member, and drops the weights fitted with the old one
    assert relink_ensemble(models, b)
    relinked = json.loads((models / ENSEMBLE_CARD).read_text())
    assert relinked["members"][0] == on_disk["members"][0] and "weights" not in relinked


@pytest.mark.slow
def test_a_card_that_is_not_the_oof_model_is_refused(
    cv_run: dict[str, Any], two_members: Path
) -> None:
    chosen = (two_members / "chosen.txt").read_text()
    raw = json.loads((two_members / "member-b.json").read_text())
    raw["calibration"]["temperature"] *= 2
    (two_members / "member-c.json").write_text(json.dumps(raw))
    with pytest.raises(SystemExit, match="temperature"):
        load_member(f"member-c.json={cv_run['oof']}:{chosen}", two_members)
    with pytest.raises(SystemExit, match="CARD=OOF"):
        load_member(f"../member-b.json={cv_run['oof']}", two_members)
