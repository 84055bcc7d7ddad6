"""`skinscreen train --cv`: what it hands to the CV runner; `cv_final` refuses to ship a model
that is not the served one into the served models (no training here)."""

from __future__ import annotations

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


def test_lite0_keeps_the_shipped_name_and_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
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
        cv_final.main(["--name", "skinscreen-efficientnet-lite1"])
