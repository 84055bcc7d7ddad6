"""`ensemble_ship`: an ensemble of two CV-trained EfficientNets, fitted out of fold and served."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs the `train` extra")
pytest.importorskip("efficientnet_lite_pytorch", reason="training needs the `train` extra")

from service.evaluation.cv_metrics import Oof, softmax
from service.evaluation.ensemble_cv import cross_fitted_mixture
from service.images import load_rgb
from service.pipeline.backends import (
    ENSEMBLE_CARD,
    available_backends,
    default_backend,
    load_screener,
)
from service.pipeline.gate_config import GateConfig
from service.pipeline.model_card import ModelCard
from service.pipeline.ood import logsumexp
from service.pipeline.triage_config import TriageConfig
from service.settings import Settings
from service.training import cv_final, cv_fit
from service.training.cv_gate import GatePercentiles
from service.training.ensemble_relink import relink_ensemble
from service.training.ensemble_ship import load_member, ship_ensemble_oof
from tests.support.training_data import CV_RECIPE


def _nudged(model: Any, step: float) -> Any:
    """A copy of `model` with its last parameter moved: other weights, another sha256."""
    import copy

    import torch

    other = copy.deepcopy(model)
    with torch.no_grad():
        list(other.parameters())[-1].add_(step)
    return other.eval()


@pytest.fixture(scope="module")
def two_members(cv_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CV's final model as the served effnet (member-a) and a nudged copy of it shipped as
    an ensemble member (member-b)."""
    report = cv_fit.fit_all(
        cv_run["oof"], cv_run["work"], cv_run["data"], cv_run["shared"], GatePercentiles()
    )
    models = tmp_path_factory.mktemp("ensemble-models")
    model, log, images = cv_final.train_final(
        cv_run["data"], cv_run["work"] / "final", CV_RECIPE, report["chosen"]
    )
    shipped = {"models": models, "report": report, "model": model, "log": log, "images": images}

    def ship(name: str, entry: str, step: float) -> ModelCard:
        weights = _nudged(model, step) if step else model
        cv_final.ship_final(
            weights, log, images, cv_run["data"], models, name, "0.0.1", CV_RECIPE, report, entry
        )
        return ModelCard.load(models / f"{name}.json")

    ship("member-a", "effnet", 0.0)
    ship("member-b", "member-b", 0.01)
    return {**shipped, "ship": ship}


@pytest.mark.slow
def test_an_ensemble_ships_with_oof_weights_and_thresholds(
    cv_run: dict[str, Any], two_members: dict[str, Any], tmp_path: Path
) -> None:
    models, chosen = two_members["models"], two_members["report"]["chosen"]
    a, b = (ModelCard.load(models / f"member-{x}.json") for x in "ab")
    assert a.onnx_sha256 != b.onnx_sha256
    config = GateConfig.load(models)
    # a member keeps the served model's entries and gets its own, and re-shipping the served
    # model leaves them alone (only a borrower of its features, as yolo, follows it)
    two_members["ship"]("member-a", "effnet", 0.0)
    config = GateConfig.load(models)
    assert config.features["effnet"].model_sha256 == a.onnx_sha256
    member_b = config.features["member-b"]
    assert member_b.model_sha256 == member_b.features_sha256 == b.onnx_sha256

    # the non-served member first: it is the one whose features the ensemble's gate measures
    members = [load_member(f"member-{x}.json={cv_run['oof']}:{chosen}", models) for x in "ba"]
    card = ship_ensemble_oof(
        members, models, cv_run["data"], cv_run["shared"], tmp_path / "work", "0.0.1"
    )

    digest = hashlib.sha256((b.onnx_sha256 + a.onnx_sha256).encode()).hexdigest()
    on_disk = json.loads((models / ENSEMBLE_CARD).read_text())
    assert on_disk["sha256"] == digest == card["sha256"]
    assert [m["card"] for m in on_disk["members"]] == ["member-b.json", "member-a.json"]
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
        # each fold: the mixture fitted on the other folds, calibrated by their temperature
        view = Oof(members[0].logits, oof["labels"], list(oof["groups"]), oof["folds"])
        mixed, _, temperatures = cross_fitted_mixture([m.logits for m in members], view)
        for fold, t in enumerate(temperatures):
            held = oof["folds"] == fold
            expected = np.log(np.clip(softmax(mixed[held], t), 1e-12, 1))
            np.testing.assert_allclose(oof["last_logits"][held], expected, atol=1e-5)

    gate, triage = GateConfig.load(models), TriageConfig.load(models)
    feature = gate.features["ensemble"]
    assert feature.model_sha256 == digest and feature.features_sha256 == b.onnx_sha256
    assert (
        feature.artefact == gate.features["member-b"].artefact != gate.features["effnet"].artefact
    )
    # energy bars as the served ensemble scores it: the weighted mean of the members' energies
    energy = sum(w * logsumexp(m.logits) for w, m in zip(on_disk["weights"], members, strict=True))
    assert gate.ood["ensemble"].model_sha256 == digest
    assert gate.ood["ensemble"].threshold == round(float(np.percentile(energy, 1.0)), 5)
    assert triage.conformal["ensemble"].threshold == on_disk["metrics"]["conformal"]["threshold"]

    settings = Settings(models_dir=models, effnet_model="member-a", yolo_model="not-shipped")
    assert available_backends(settings) == ["effnet", "ensemble"]
    beats = figures["macro_f1"] > a.raw["metrics"]["cross_validated"]["macro_f1"]
    beats = beats and figures["beats_best_single"]
    assert default_backend(settings) == ("ensemble" if beats else "effnet")
    screener = load_screener(settings, "ensemble")
    assert screener.features is not None and screener.features[0].model_sha256 == digest
    assert screener.conformal_threshold == triage.conformal["ensemble"].threshold
    assert screener.malignancy_threshold == triage.thresholds["ensemble"].threshold
    outcome, classification = screener.screen(load_rgb(cv_run["items"][0].path))
    assert outcome.status in ("ok", "inconclusive", "rejected") and classification.label

    # an ensemble card that says it does not beat its best member is never the default
    doctored = json.loads(json.dumps(on_disk))
    doctored["metrics"]["cross_validated"].update(macro_f1=1.0, beats_best_single=False)
    (models / ENSEMBLE_CARD).write_text(json.dumps(doctored))
    assert default_backend(settings) == "effnet"
    doctored["metrics"]["cross_validated"]["beats_best_single"] = True
    (models / ENSEMBLE_CARD).write_text(json.dumps(doctored))
    assert default_backend(settings) == "ensemble"
    (models / ENSEMBLE_CARD).write_text(json.dumps(on_disk))

    # member-b retrained: the ensemble is left out until re-linked, which replaces only that
    # member, drops what was fitted with the old one and keys the gate to the new member-b
    two_members["ship"]("member-b", "member-b", 0.02)
    new_b = ModelCard.load(models / "member-b.json")
    assert new_b.onnx_sha256 not in (a.onnx_sha256, b.onnx_sha256)
    assert available_backends(settings) == ["effnet"]
    with pytest.raises(ValueError, match="other weights"):
        load_screener(settings, "ensemble")
    assert relink_ensemble(models, new_b, by_name_only=True)
    relinked = json.loads((models / ENSEMBLE_CARD).read_text())
    assert relinked["members"][1] == on_disk["members"][1]
    assert relinked["members"][0]["onnx_sha256"] == new_b.onnx_sha256
    assert "weights" not in relinked and "cross_validated" not in relinked["metrics"]
    new_digest = hashlib.sha256((new_b.onnx_sha256 + a.onnx_sha256).encode()).hexdigest()
    gate, triage = GateConfig.load(models), TriageConfig.load(models)
    assert gate.features["ensemble"].model_sha256 == new_digest
    assert gate.features["ensemble"].features_sha256 == new_b.onnx_sha256
    assert gate.features["ensemble"] == replace(
        gate.own_features(new_b.onnx_sha256), model_name=gate.features["ensemble"].model_name,
        model_sha256=new_digest,
    )  # fmt: skip
    assert "ensemble" not in gate.ood
    assert digest not in {e.model_sha256 for e in triage.conformal.values()}
    assert available_backends(settings) == ["effnet", "ensemble"]
    assert default_backend(settings) == "effnet"  # no out-of-fold figures any more
    # a member under another name is not taken for member-b
    other = ModelCard(models / "elsewhere.json", {**new_b.raw, "name": "member-z"})
    assert not relink_ensemble(models, other, by_name_only=True)


@pytest.mark.slow
def test_a_card_that_is_not_the_oof_model_is_refused(
    cv_run: dict[str, Any], two_members: dict[str, Any]
) -> None:
    models, chosen = two_members["models"], two_members["report"]["chosen"]
    raw = json.loads((models / "member-a.json").read_text())
    raw["calibration"]["temperature"] *= 2
    (models / "member-c.json").write_text(json.dumps(raw))
    with pytest.raises(SystemExit, match="temperature"):
        load_member(f"member-c.json={cv_run['oof']}:{chosen}", models)
    with pytest.raises(SystemExit, match="CARD=OOF"):
        load_member(f"../member-a.json={cv_run['oof']}", models)
    other = "last" if chosen != "last" else "ema"
    with pytest.raises(SystemExit, match="serves the"):  # not the variant the card serves
        load_member(f"member-a.json={cv_run['oof']}:{other}", models)
    # without a variant the card's own is taken
    assert load_member(f"member-a.json={cv_run['oof']}", models).variant == chosen


@pytest.mark.slow
def test_a_gate_of_another_kind_is_refused_and_nothing_is_written(
    cv_run: dict[str, Any], two_members: dict[str, Any], tmp_path: Path
) -> None:
    models, chosen = two_members["models"], two_members["report"]["chosen"]
    members = [load_member(f"member-{x}.json={cv_run['oof']}:{chosen}", models) for x in "ab"]
    config = GateConfig.load(models)
    effnet = config.features["effnet"]
    assert effnet.method == "layered-mahalanobis"
    replace(
        config, features={**config.features, "effnet": replace(effnet, method="mahalanobis")}
    ).save(models)
    before = {p.name: p.read_bytes() for p in models.glob("*.json")}
    with pytest.raises(SystemExit, match="would not fit"):
        ship_ensemble_oof(
            members, models, cv_run["data"], cv_run["shared"], tmp_path / "work", "0.0.1"
        )
    assert {p.name: p.read_bytes() for p in models.glob("*.json")} == before
    config.save(models)  # as it was, for any test after this one


def test_a_students_single_variant_oof_file_reads_as_its_one_variant(tmp_path: Path) -> None:
    from service.training.cv_fit import borrowed_gate, read_oof, variant_logits, variants

    logits = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.savez(tmp_path / "student.oof.npz", last_logits=logits, labels=np.array([0, 1]))
    arrays = read_oof(tmp_path / "student.oof.npz")
    views = variants(arrays)
    assert list(views) == ["last"]  # no variant it does not hold (the card would list copies)
    np.testing.assert_array_equal(views["last"], logits)
    with pytest.raises(SystemExit, match=r"holds the variants \['last'\], not 'ema\+flip'"):
        variant_logits(arrays, "ema+flip", "student.oof.npz")
    teacher = {
        "ema_feature_distance": np.array([1.0, 2.0]),
        "last_feature_distance": np.array([9.0, 9.0]),
        "negative_names": np.array(["a"]),
    }
    borrowed = borrowed_gate(teacher, "ema")  # the teacher's served weights' distances
    assert set(borrowed) == {"last_feature_distance", "negative_names"}
    np.testing.assert_array_equal(borrowed["last_feature_distance"], [1.0, 2.0])
