"""`skinscreen train --cv`: photo-group folds, resumable fold training, the OOF file and the fit.

Real EfficientNet-Lite0 training on a few skin6 photos at 64 px (the TINY recipe), two folds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the `train` extra")
pytest.importorskip("efficientnet_lite_pytorch", reason="training needs the `train` extra")

from service.evaluation.cv_report import format_cv_report  # noqa: E402
from service.training import cv, cv_fit  # noqa: E402
from service.training.cv_gate import GatePercentiles  # noqa: E402
from tests.support.training_data import CV_RECIPE as RECIPE  # noqa: E402

#: The multi-layer gate's parts, in feature-column order (`layer_taps.layout`).
LAYERS = ["last_layer", "block2", "block5", "block8", "block11", "block15"]


@pytest.mark.slow
def test_a_killed_fold_resumes_from_its_checkpoint(cv_run: dict[str, Any]) -> None:
    work = cv_run["work"]
    assert cv_run["checkpoint_after_kill"]
    progress = (work / "progress.log").read_text()
    assert "fold 0: resumed after epoch 1" in progress
    log = json.loads((work / "fold0.log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2]
    assert not list(work.glob("*.checkpoint.pt"))  # removed once a fold is done
    # a finished run is not retrained: the folds' files are reused as they are
    before = (work / "fold1.npz").stat().st_mtime_ns
    cv.run_cv(cv_run["data"], work, cv_run["oof"], 2, RECIPE, cv_run["shared"])
    assert (work / "fold1.npz").stat().st_mtime_ns == before


@pytest.mark.slow
def test_the_oof_file_has_one_held_out_prediction_per_photo(cv_run: dict[str, Any]) -> None:
    with np.load(cv_run["oof"]) as oof:
        n = len(cv_run["items"])
        assert oof["labels"].shape == (n,) and set(oof["folds"].tolist()) == {0, 1}
        for tag in ("last", "ema"):
            assert oof[f"{tag}_logits"].shape == (n, 6)
            assert np.isfinite(oof[f"{tag}_logits"]).all()
            assert (oof[f"{tag}_logits"] != 0).any(axis=1).all()  # every photo was predicted
            assert (oof[f"{tag}_feature_distance"] > 0).all()
            assert oof[f"{tag}_negative_distances"].shape == (2, len(oof["negative_names"]))
            layers = oof[f"{tag}_layer_distances"]
            assert layers.shape == (n, len(oof["layer_names"])) and (layers > 0).all()
            assert oof[f"{tag}_negative_layer_distances"].shape == (
                2,
                len(oof["negative_names"]),
                len(oof["layer_names"]),
            )
        assert list(oof["layer_names"]) == LAYERS
        kinds = set(oof["negative_kinds"].tolist())
        assert {"shared DICOM", "generated", "radiology", "histology", "screenshot"} <= kinds
    for fold in (0, 1):
        with np.load(cv_run["work"] / f"fold{fold}.npz") as part:
            assert not set(part["held_index"]) & set(part["train_index"])


@pytest.mark.slow
def test_a_changed_plan_is_refused(cv_run: dict[str, Any]) -> None:
    with pytest.raises(SystemExit, match="another data set"):
        cv.prepare(cv_run["data"], cv_run["work"], 3, RECIPE)
    with pytest.raises(SystemExit, match="another data set"):
        cv.prepare(cv_run["data"], cv_run["work"], 2, replace(RECIPE, arch="efficientnet-lite1"))


@pytest.mark.slow
def test_a_plan_from_before_the_arch_field_still_resumes(cv_run: dict[str, Any]) -> None:
    plan_path = cv_run["work"] / "plan.json"
    original = plan_path.read_text()
    plan = json.loads(original)
    del plan["recipe"]["arch"]  # as written before Lite1/Lite2 were supported
    plan_path.write_text(json.dumps(plan))
    try:
        assert (cv.prepare(cv_run["data"], cv_run["work"], 2, RECIPE) == cv_run["folds"]).all()
    finally:
        plan_path.write_text(original)


@pytest.mark.slow
def test_fit_reports_cross_fitted_figures(cv_run: dict[str, Any]) -> None:
    report = cv_fit.fit_all(
        cv_run["oof"], cv_run["work"], cv_run["data"], cv_run["shared"], GatePercentiles()
    )
    assert set(report["variants"]) == {"last", "last+flip", "ema", "ema+flip"}
    chosen = report["variants"][report["chosen"]]
    assert 0 <= chosen["macro_f1_ci95"][0] <= chosen["macro_f1_ci95"][1] <= 1
    assert len(chosen["fold_temperatures"]) == 2
    assert 0 < report["conformal"]["threshold"] <= 1
    assert 0 <= report["conformal"]["coverage"] <= 1
    gate = report["gate"]
    assert 0 <= gate["skin_rejected"] <= 1 and set(gate["skin_rejected_per_class"]) == set(
        cv.CLASSES
    )
    assert {"dwv__nema-vl2_j2kr", "chest_xray_like", "screenshot"} <= set(gate["negatives"])
    assert all(len(v["verdicts"]) == 2 for v in gate["negatives"].values())
    assert gate["distance"] == "layered" and len(gate["layer_log_scale"]) == 6
    counts = gate["negative_false_acceptance"]
    assert counts["accepted"] + counts["held_back_as_unusual"] + counts["rejected"] == 2 * len(
        gate["negatives"]
    )
    assert 0 <= report["triage"]["threshold"] <= 0.5
    assert report["variants"][report["chosen"]]["by_photo_group"]["groups"] == len(cv_run["items"])
    text = format_cv_report(json.loads(json.dumps(report)))
    for needle in ("<- chosen", "conformal sets", "gate v2", "triage", *cv.CLASSES):
        assert needle in text


@pytest.mark.slow
def test_the_final_model_ships_with_the_oof_thresholds(cv_run: dict[str, Any]) -> None:
    from service.images import load_rgb
    from service.pipeline.classifier import OnnxClassifier
    from service.pipeline.gate_config import GateConfig
    from service.pipeline.model_card import ModelCard
    from service.pipeline.screening import Screener
    from service.training import cv_final

    report = cv_fit.fit_all(
        cv_run["oof"], cv_run["work"], cv_run["data"], cv_run["shared"], GatePercentiles()
    )
    report["chosen"] = "ema+flip"  # exercise the EMA weights and the flip averaging in the graph
    models = cv_run["work"].parent / "shipped"
    models.mkdir()
    model, log, images = cv_final.train_final(
        cv_run["data"], cv_run["work"] / "final", RECIPE, report["chosen"]
    )
    card = cv_final.ship_final(
        model, log, images, cv_run["data"], models, "tiny-final", "2.0.0", RECIPE, report
    )
    assert [e["epoch"] for e in log] == [1, 2]
    assert card["metrics"]["cross_validated"]["variant"] == "ema+flip"
    assert "val" not in card["metrics"]  # val is training data now: only CV figures
    assert card["calibration"]["temperature"] == report["temperature"]
    loaded = ModelCard.load(models / "tiny-final.json")
    classifier = OnnxClassifier(loaded)
    photos = [load_rgb(item.path) for item in cv_run["items"][:3]]
    logits, features = classifier.forward(photos)
    with torch.no_grad():
        plain, mirrored = model(images[:3]), model(images[:3].flip(-1))
    np.testing.assert_allclose(logits, ((plain + mirrored) / 2).numpy(), atol=1e-4)
    assert features is not None and features.shape == (3, 2736)  # last layer + 5 blocks
    config = GateConfig.load(models)
    feature = config.features["effnet"]
    assert feature.method == "layered-mahalanobis"
    assert feature.model_sha256 == loaded.onnx_sha256
    assert feature.unusual_threshold is not None
    assert feature.unusual_threshold <= feature.soft_threshold <= feature.threshold
    screener = Screener(classifier, config, 0.5, 0.1)
    assert screener.features is not None
    assert screener.conformal_threshold == report["conformal"]["threshold"]
    assert screener.malignancy_threshold == report["triage"]["threshold"]
    gate, classification = screener.screen(photos[0])
    assert classification.prediction_set and classification.prediction_set[0] == (
        classification.label
    )
    several = len(classification.prediction_set) > 1
    assert gate.status == "rejected" or several == ("several_conditions" in gate.reasons)
    # the ensemble card and its gate entries follow the new member; what was fitted is dropped
    import hashlib

    from service.pipeline.backends import ENSEMBLE_CARD
    from service.pipeline.model_card import write_card
    from service.pipeline.triage_config import TriageConfig
    from service.training.ensemble_relink import relink_ensemble

    shipped_models = Path(__file__).resolve().parents[2] / "models"
    write_card(models / ENSEMBLE_CARD, _fitted_yolo_effnet_ensemble(shipped_models))
    old = GateConfig.load(shipped_models)
    GateConfig(old.quality, old.ood, {**config.features}, models).save(models)
    triage = TriageConfig.load(models)  # + an entry an older mixture left behind
    older = replace(triage.thresholds["effnet"], model_name="ensemble(old)", model_sha256="0" * 64)
    replace(triage, thresholds={**triage.thresholds, "ensemble": older}).save(models)
    assert relink_ensemble(models, loaded)
    ensemble = json.loads((models / ENSEMBLE_CARD).read_text())
    yolo_sha = next(m["onnx_sha256"] for m in ensemble["members"] if m["backend"] == "yolo")
    digest = hashlib.sha256((yolo_sha + loaded.onnx_sha256).encode()).hexdigest()
    assert ensemble["sha256"] == digest and "val" not in ensemble["metrics"]
    member = next(m for m in ensemble["members"] if m["backend"] == "effnet")
    assert member["card"] == "tiny-final.json" and "oof_macro_f1" not in member
    assert ensemble["calibration"]["temperature"] == 1.0
    assert "weights" not in ensemble and "triage" not in ensemble
    relinked = GateConfig.load(models)
    assert relinked.features["ensemble"].model_sha256 == digest
    assert relinked.features["ensemble"].threshold == feature.threshold
    assert "ensemble" not in relinked.ood  # fitted for the old mixture
    left = TriageConfig.load(models)
    assert "ensemble" not in left.thresholds and "ensemble" not in left.conformal
    assert left.thresholds["effnet"].model_sha256 == loaded.onnx_sha256


def _fitted_yolo_effnet_ensemble(shipped_models: Path) -> dict[str, Any]:
    """A YOLO + EfficientNet ensemble card as `ensemble_ship` writes one (weights, temperature,
    figures, triage section), over the shipped single models."""
    from service.pipeline.classifier import ensemble_info
    from service.pipeline.model_card import ModelCard
    from service.settings import Settings

    cards = [
        ModelCard.load(shipped_models / "skinscreen-yolov8n-cls.json"),
        ModelCard.load(shipped_models / f"{Settings().effnet_model}.json"),
    ]
    members = [
        {
            "backend": backend,
            "name": card.name,
            "version": str(card.raw["version"]),
            "card": card.path.name,
            "onnx_sha256": card.onnx_sha256,
            "temperature": card.temperature,
            "oof_macro_f1": 0.9,
        }
        for backend, card in zip(("yolo", "effnet"), cards, strict=True)
    ]
    return {
        "name": "skinscreen-ensemble",
        "version": "2.0.0",
        "classes": cards[0].raw["classes"],
        "sha256": ensemble_info([c.info for c in cards]).sha256,
        "members": members,
        "weights": [0.3, 0.7],
        "calibration": {"method": "NLL on OOF predictions", "temperature": 0.8},
        "metrics": {"cross_validated": {"macro_f1": 0.92}},
        "triage": {"malignancy_threshold": 0.01},
    }


@pytest.mark.slow
def test_yolo_students_are_cross_validated_on_the_teachers_folds(cv_run: dict[str, Any]) -> None:
    pytest.importorskip("ultralytics", reason="training needs the `train` extra")
    from service.training.yolo import YoloRecipe
    from service.training.yolo_cv import run_yolo_cv, teacher_gap
    from service.training.yolo_distil import DistilRecipe

    work = cv_run["work"].parent / "yolo-cv"
    out = cv_run["work"].parent / "models" / "student.oof.npz"
    recipe = YoloRecipe(epochs=1, imgsz=32, batch=4)
    teacher_oof = cv_run["oof"]
    run_yolo_cv(
        cv_run["data"], cv_run["work"], work, out, recipe, DistilRecipe(), "ema", teacher_oof
    )
    assert (work / "fold0-teacher.onnx").is_file()  # the teacher ran through onnxruntime
    with np.load(out) as oof, np.load(teacher_oof) as teacher:
        assert oof["last_logits"].shape == (len(cv_run["items"]), 6)
        assert (oof["folds"] == cv_run["folds"]).all()
        assert np.isfinite(oof["last_logits"]).all() and (oof["last_logits"] != 0).any(axis=1).all()
        assert "ema_logits" not in oof.files  # one variant: the student's last epoch
        # the served YOLO measures with the EfficientNet's features: its gate is the teacher's
        for key in ("feature_distance", "layer_distances", "negative_layer_distances"):
            np.testing.assert_array_equal(oof[f"last_{key}"], teacher[f"ema_{key}"])
    # the fold's student never saw its held-out photos: val of fold k is fold k
    val = {p.name for p in (work / "fold0-data" / "val").rglob("*.jpg")}
    train = {p.name for p in (work / "fold0-data" / "train").rglob("*.jpg")}
    assert val and train and not val & train
    in_fold0 = {
        item.path.name for item, k in zip(cv_run["items"], cv_run["folds"], strict=True) if k == 0
    }
    assert val == in_fold0
    result = cv_fit.fit_all(out, work, cv_run["data"], cv_run["shared"], GatePercentiles())
    assert list(result["variants"]) == ["last"] and result["chosen"] == "last"
    figures = result["variants"]["last"]
    assert 0 <= figures["macro_f1"] <= 1 and len(figures["fold_temperatures"]) == 2
    assert result["gate"]["distance"] == "layered"  # the teacher's multi-layer distances
    assert result["conformal"]["threshold"] > 0 and "threshold" in result["triage"]
    report = work / "teacher.cv.json"
    report.write_text(json.dumps({"chosen": "ema", "variants": {"ema": {"macro_f1": 0.9}}}))
    assert teacher_gap(0.85, report) == {"teacher_macro_f1": 0.9, "gap_to_teacher": 0.05}
    # the ensemble's weights are fitted on both members' OOF predictions
    from service.training import ensemble_oof

    report = cv_run["work"].parent / "ensemble.cv.json"  # (the ensemble's, now)
    assert ensemble_oof.main([str(out), f"{cv_run['oof']}:ema", "--out", str(report)]) == 0
    fitted = json.loads(report.read_text())
    assert len(fitted["weights"]) == 2 and abs(sum(fitted["weights"]) - 1) < 1e-9
    assert len(fitted["fold_weights"]) == 2 and isinstance(fitted["beats_best_single"], bool)


@pytest.mark.slow
def test_multi_layer_distances_are_added_to_an_older_oof_file(
    cv_run: dict[str, Any], tmp_path: Path
) -> None:
    from service.training import cv_layers

    older = tmp_path / "older.oof.npz"
    with np.load(cv_run["oof"]) as stored:
        arrays = {k: stored[k] for k in stored.files if "layer" not in k}
        fresh = stored["ema_layer_distances"]
    np.savez_compressed(older, **arrays)
    report = cv_layers.add_to_oof(older, cv_run["data"], cv_run["shared"], cv_run["work"], "ema")
    with np.load(older) as added:
        np.testing.assert_allclose(added["ema_layer_distances"], fresh, rtol=1e-4)
    teeth = report["combined"]["fo-dicom__GH195"]
    assert len(teeth) == 2 and all(0 <= p <= 100 for p in teeth)
    assert list(report["per_layer"]) == LAYERS
