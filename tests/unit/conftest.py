"""Fixtures of the unit tests: one tiny cross-validation run, shared by the modules judging it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class Interrupted(Exception):
    pass


@pytest.fixture(scope="session")
def cv_run(
    skin6_dir: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Real EfficientNet-Lite0 CV on a few skin6 photos, two folds; fold 0 killed once."""
    pytest.importorskip("torch", reason="training needs the `train` extra")
    pytest.importorskip("efficientnet_lite_pytorch", reason="training needs the `train` extra")
    from service.training import cv
    from service.training.cv_fold import train_fold
    from service.training.effnet_fit import EpochTrainer
    from tests.support.training_data import CV_RECIPE as RECIPE
    from tests.support.training_data import tiny_dataset

    root = tmp_path_factory.mktemp("cv")
    data = tiny_dataset(skin6_dir, root / "data", per_class=3)
    work, oof = root / "work", root / "models" / "tiny.oof.npz"
    items = cv.all_photos(data)
    folds = cv.prepare(data, work, 2, RECIPE)

    # fold 0 is killed after its first epoch, then resumed from the checkpoint
    real_epoch = EpochTrainer.epoch
    calls = {"n": 0}

    def dying_epoch(self: EpochTrainer, *args: Any, **kwargs: Any) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupted
        return real_epoch(self, *args, **kwargs)

    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EpochTrainer, "epoch", dying_epoch)
        with pytest.raises(Interrupted):
            train_fold(items, folds, 0, RECIPE, work, cv.CLASSES, 0.9, 1, lines.append)
    checkpoint_after_kill = (work / "fold0.checkpoint.pt").is_file()
    path = cv.run_cv(data, work, oof, 2, RECIPE, shared_dir)
    return {
        "data": data,
        "work": work,
        "oof": path,
        "items": items,
        "folds": folds,
        "checkpoint_after_kill": checkpoint_after_kill,
        "shared": shared_dir,
    }
