"""`yolo_final`: the distilled YOLO trained on every photo ships with its CV's thresholds.

The tiny CV of `conftest.cv_run` (EfficientNet-Lite0 at 64 px, two folds) is the teacher; its
final model is shipped first (`cv_final`), then a one-epoch 32 px student CV and final run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the `train` extra")
pytest.importorskip("ultralytics", reason="training needs the `train` extra")
pytest.importorskip("efficientnet_lite_pytorch", reason="training needs the `train` extra")

from service.evaluation.cv_report import format_cv_report  # noqa: E402
from service.pipeline.classifier import OnnxClassifier  # noqa: E402
from service.pipeline.gate_config import GateConfig  # noqa: E402
from service.pipeline.model_card import ModelCard  # noqa: E402
from service.pipeline.triage_config import TriageConfig  # noqa: E402
from service.training import cv_final, cv_fit  # noqa: E402
from service.training.cv_gate import GatePercentiles  # noqa: E402
from tests.support.training_data import CV_RECIPE  # noqa: E402


@pytest.mark.slow
def test_the_final_student_ships_with_its_cv_thresholds_and_the_teachers_gate(
    cv_run: dict[str, Any], tmp_path: Path
) -> None:
    from service.training.yolo import YoloRecipe
    from service.training.yolo_cv import run_yolo_cv, student_report
    from service.training.yolo_distil import DistilRecipe
    from service.training.yolo_final import ship_student

    models = tmp_path / "models"
    (models / "cv").mkdir(parents=True)
    teacher_report = cv_fit.fit_all(
        cv_run["oof"], cv_run["work"], cv_run["data"], cv_run["shared"], GatePercentiles()
    )
    tag = teacher_report["chosen"].split("+")[0]  # the weights the teacher ships
    model, log, images = cv_final.train_final(
        cv_run["data"], tmp_path / "teacher-final", CV_RECIPE, teacher_report["chosen"]
    )
    cv_final.ship_final(
        model,
        log,
        images,
        cv_run["data"],
        models,
        "tiny-teacher",
        "2.0.0",
        CV_RECIPE,
        teacher_report,
    )
    teacher = ModelCard.load(models / "tiny-teacher.json")

    work = tmp_path / "student-cv"
    oof = models / "cv" / "student.oof.npz"
    recipe = YoloRecipe(epochs=2, imgsz=32, batch=4)
    with pytest.raises(SystemExit, match="the student's gate is fitted on the teacher's"):
        missing = tmp_path / "missing.oof.npz"  # refused before hours of folds, not after
        run_yolo_cv(cv_run["data"], cv_run["work"], work, oof, recipe, DistilRecipe(), tag, missing)
    assert not work.exists()
    run_yolo_cv(
        cv_run["data"], cv_run["work"], work, oof, recipe, DistilRecipe(), tag, cv_run["oof"]
    )
    taught = {"name": "tiny-teacher", "weights": tag}
    teacher_file = models / "cv" / "tiny-teacher.cv.json"
    teacher_file.write_text(json.dumps(teacher_report))
    report = student_report(oof, work, cv_run["data"], cv_run["shared"], taught, teacher_file)
    assert "energy" not in report and report["max_logit"]["percentile"] == 1.0
    teacher_f1 = teacher_report["variants"][teacher_report["chosen"]]["macro_f1"]
    student_f1 = report["variants"]["last"]["macro_f1"]
    assert report["gap_to_teacher"] == round(teacher_f1 - student_f1, 4)
    assert "distilled from tiny-teacher" in format_cv_report(report)
    assert "0.0100 above it" in format_cv_report({**report, "gap_to_teacher": -0.01})
    plain = format_cv_report({**report, "distillation": None})
    assert "compared with tiny-teacher" in plain and "distilled" not in plain
    assert report["recipe"]["patience"] == 2  # as the folds trained: no early stopping

    other_tag = "last" if tag == "ema" else "ema"
    fitted = report["gate"]["fitted_on_all"]
    refused = {
        "taught from another-model": {
            **report,
            "teacher": {"name": "another-model", "weights": tag},
        },
        f"{other_tag!r} weights": {**report, "teacher": {**taught, "weights": other_tag}},
        "gate entry is not": {
            **report,
            "gate": {**report["gate"], "fitted_on_all": {**fitted, "soft": fitted["soft"] + 1}},
        },
    }
    for message, wrong in refused.items():
        with pytest.raises(SystemExit, match=message):
            ship_student(
                cv_run["data"], models, wrong, teacher, cv_run["work"], tmp_path / "f", "s", "0"
            )
    # an ensemble that holds the student follows it (by name)
    from service.pipeline.backends import ENSEMBLE_CARD
    from service.pipeline.classifier import ensemble_info
    from service.pipeline.domain import ModelInfo
    from service.pipeline.model_card import write_card

    old = ModelInfo("tiny-student", "1.0.0", "0" * 64)
    members = [
        {
            "backend": "yolo",
            "name": old.name,
            "version": old.version,
            "card": "tiny-student.json",
            "onnx_sha256": old.sha256,
            "temperature": 1.0,
            "oof_macro_f1": 0.5,
        },
        {
            "backend": "effnet",
            "name": teacher.name,
            "version": "2.0.0",
            "card": teacher.path.name,
            "onnx_sha256": teacher.onnx_sha256,
            "temperature": teacher.temperature,
        },
    ]
    write_card(
        models / ENSEMBLE_CARD,
        {
            "name": "skinscreen-ensemble",
            "version": "2.0.0",
            "classes": teacher.raw["classes"],
            "sha256": ensemble_info([old, teacher.info]).sha256,
            "members": members,
            "weights": [0.5, 0.5],
            "calibration": {"temperature": 0.9},
        },
    )
    card = ship_student(
        cv_run["data"],
        models,
        report,
        teacher,
        cv_run["work"],
        tmp_path / "final",
        "tiny-student",
        "2.0.0",
    )

    loaded = ModelCard.load(models / "tiny-student.json")
    assert loaded.temperature == report["temperature"]
    assert card["metrics"]["cross_validated"]["variant"] == "last"
    assert list(card["metrics"]["cross_validated"]["variants"]) == ["last"]
    assert "val" not in card["metrics"]  # every photo trained: only CV figures
    assert card["training"]["teacher"]["onnx_sha256"] == teacher.onnx_sha256
    assert card["training"]["recipe"]["distillation"] == {"temperature": 2.0, "alpha": 0.7}
    assert card["training"]["data"]["splits"] == ["train", "val"]
    assert card["training"]["recipe"]["patience"] == card["training"]["recipe"]["epochs"] == 2
    runs = list((tmp_path / "final" / "work" / "runs").glob("*/results.csv"))
    assert len(runs) == 1 and len(runs[0].read_text().strip().splitlines()) == 1 + 2  # no stop
    trained = {p.name for p in (tmp_path / "final" / "data" / "train").rglob("*.jpg")}
    assert trained == {item.path.name for item in cv_run["items"]}  # every photo
    classifier = OnnxClassifier(loaded)
    from service.images import load_rgb

    probs = classifier.probabilities([load_rgb(cv_run["items"][0].path)])
    assert probs.shape == (1, 6) and np.isclose(probs.sum(), 1.0, atol=1e-4)

    config = GateConfig.load(models)
    own = config.features["effnet"]
    borrowed = config.features["yolo"]
    assert borrowed.model_sha256 == loaded.onnx_sha256 != own.model_sha256
    assert borrowed.features_sha256 == teacher.onnx_sha256  # measured with the teacher's features
    assert (borrowed.threshold, borrowed.soft_threshold) == (own.threshold, own.soft_threshold)
    ood = config.ood["yolo"]
    assert ood.score == "max_logit" and ood.model_sha256 == loaded.onnx_sha256
    assert ood.threshold == report["max_logit"]["threshold"]
    triage = TriageConfig.load(models)
    assert triage.thresholds["yolo"].threshold == report["triage"]["threshold"]
    assert triage.conformal["yolo"].threshold == report["conformal"]["threshold"]
    assert triage.thresholds["yolo"].model_sha256 == loaded.onnx_sha256
    # the teacher's own entries are left alone
    assert triage.thresholds["effnet"].model_sha256 == teacher.onnx_sha256
    assert json.loads((models / "gate.json").read_text())["ood"]["effnet"]["score"] == "energy"
    ensemble = json.loads((models / ENSEMBLE_CARD).read_text())
    student = next(m for m in ensemble["members"] if m["backend"] == "yolo")
    assert student["onnx_sha256"] == loaded.onnx_sha256 and "oof_macro_f1" not in student
    assert "weights" not in ensemble  # fitted with the old student: ensemble_ship refits them
