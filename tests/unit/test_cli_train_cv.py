"""`skinscreen train --cv`: what it hands to the CV runner; `cv_final` refuses to ship a model
that is not the served one into the served models (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service import cli
from service.training import cv


def handed_over(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    captured: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        captured.append(argv)
        return 1  # stop before cv_fit

    monkeypatch.setattr(cv, "main", fake_main)
    assert cli.main(["train", "--cv", "5", "--data", "d", *args]) == 1
    return captured[0]


def test_lite0_keeps_the_recipe_name_and_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = handed_over(monkeypatch, "--arch", "efficientnet-lite0")
    parsed = cv.build_parser().parse_args(argv)
    assert parsed.name == cv.DEFAULT_NAME and parsed.arch == "efficientnet-lite0"
    assert (parsed.imgsz, parsed.train_imgsz) == (cv.CV_RECIPE.imgsz, cv.CV_RECIPE.train_imgsz)


def test_a_wider_variant_gets_its_own_run_and_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = handed_over(monkeypatch, "--arch", "efficientnet-lite1", "--imgsz", "256")
    parsed = cv.build_parser().parse_args(argv)
    assert parsed.name == "skinscreen-efficientnet-lite1"
    assert str(parsed.work_dir) == "build/cv/skinscreen-efficientnet-lite1"
    assert (parsed.arch, parsed.imgsz, parsed.train_imgsz) == ("efficientnet-lite1", 256, 224)


def test_cv_final_refuses_a_variant_nobody_serves() -> None:
    from service.training import cv_final

    with pytest.raises(SystemExit, match="not the served effnet model"):
        cv_final.main(["--name", "skinscreen-efficientnet-lite0"])  # served before Lite1


def test_the_cv_tools_default_to_the_served_model_and_its_chosen_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.training import cv_fit

    monkeypatch.setenv("SKINSCREEN_EFFNET_MODEL", "skinscreen-efficientnet-lite2")
    with pytest.raises(FileNotFoundError, match=r"skinscreen-efficientnet-lite2\.oof\.npz"):
        cv_fit.main([])  # judges the served model's OOF file (none here for this name)
    report = tmp_path / "m.cv.json"
    assert cv.chosen_tag(report) == "ema"  # no report: the EMA weights
    report.write_text(json.dumps({"chosen": "last+flip"}))
    assert cv.chosen_tag(report) == "last"
    report.write_text(json.dumps({"chosen": "ema"}))
    assert cv.chosen_tag(report) == "ema"


def test_evaluate_cv_prints_the_served_models_report(capsys: pytest.CaptureFixture[str]) -> None:
    from service.settings import Settings

    served = Settings().effnet_model
    report = json.loads((Settings().models_dir / "cv" / f"{served}.cv.json").read_text())
    assert cli.main(["evaluate", "--cv"]) == 0
    assert f"{report['variants'][report['chosen']]['macro_f1']:.3f}" in capsys.readouterr().out
    assert cli.main(["evaluate", "--cv", "no-such-run"]) == 2
