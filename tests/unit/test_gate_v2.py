"""Gate v2 and calibrated uncertainty: conformal sets, `unusual_image`, group folds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from service.evaluation.cv_metrics import Oof, cross_fitted_conformal, group_bootstrap, macro_f1
from service.evaluation.folds import assign_folds
from service.pipeline.conformal import conformal_threshold, prediction_set
from service.pipeline.domain import Classification, ModelInfo
from service.pipeline.gate_config import FeatureThreshold, QualityThresholds
from service.pipeline.policy import candidates, confidence_reasons, verdict
from service.pipeline.quality import SEVERAL_CONDITIONS, UNUSUAL_IMAGE
from service.pipeline.screening import unfamiliarity
from service.pipeline.triage_config import ConformalThreshold, TriageConfig

Q = QualityThresholds()
FEATURE = FeatureThreshold(
    500.0, 400.0, "m", "sha", "sha", "m.ood.npz", "x", 99.8, 99.0, unusual_threshold=300.0
)
SKIN = {"skin_fraction": 0.9, "noise_ratio": 0.2}
FEW_SKIN = {"skin_fraction": 0.4, "noise_ratio": 0.2}


def test_folds_keep_groups_whole_and_balance_classes() -> None:
    rng = np.random.default_rng(0)
    groups, labels = [], []
    for c in range(6):
        for g in range(40):
            for _ in range(int(rng.integers(1, 5))):  # near-duplicate groups of 1..4 photos
                groups.append(f"{c}-{g}")
                labels.append(c)
    folds = assign_folds(groups, labels, 5)
    for group in set(groups):
        assert len({int(f) for f, g in zip(folds, groups, strict=True) if g == group}) == 1
    for c in range(6):
        per_fold = [
            len({g for f, g, lbl in zip(folds, groups, labels, strict=True) if lbl == c and f == k})
            for k in range(5)
        ]
        assert max(per_fold) - min(per_fold) <= 1  # 40 groups dealt 8 per fold
    assert (assign_folds(groups, labels, 5) == folds).all()  # deterministic
    with pytest.raises(ValueError):
        assign_folds(groups, labels, 1)


def test_conformal_threshold_is_the_finite_sample_quantile() -> None:
    true_p = np.linspace(0.01, 1.0, 100)  # scores 1 - p: 0.0 .. 0.99
    # ceil(101 * 0.95) = 96th smallest score
    assert conformal_threshold(true_p, 0.05) == pytest.approx(np.sort(1 - true_p)[95])
    assert conformal_threshold(true_p[:10], 0.05) == 1.0  # too few photos: the set is every class


def test_prediction_set_holds_the_top_class_and_every_class_not_ruled_out() -> None:
    p = {"Acne": 0.55, "Rosacea": 0.35, "Milia": 0.1}
    assert prediction_set(p, 0.7) == ("Acne", "Rosacea")  # 1 - 0.35 = 0.65 <= 0.7
    assert prediction_set(p, 0.5) == ("Acne",)
    assert prediction_set(p, 0.1) == ("Acne",)  # never empty
    assert prediction_set(p, None) == ()


def test_a_set_of_several_classes_is_inconclusive_and_named() -> None:
    probs = np.asarray([0.55, 0.35, 0.1, 0.0, 0.0, 0.0])
    assert confidence_reasons(probs, 0.5, 0.1, ("Acne", "Rosacea")) == (SEVERAL_CONDITIONS,)
    assert confidence_reasons(probs, 0.5, 0.1, ("Acne",)) == ()
    info = ModelInfo("m", "1", "sha")
    result = Classification(
        {"Acne": 0.55, "Rosacea": 0.35, "Milia": 0.1}, info, ("Acne", "Rosacea")
    )
    assert [c for c, _ in candidates(result)] == ["Acne", "Rosacea"]
    assert [c for c, _ in candidates(replace(result, prediction_set=()))] == [
        "Acne",
        "Rosacea",
        "Milia",
    ]


def test_marginally_unfamiliar_is_inconclusive_clearly_unfamiliar_is_rejected() -> None:
    assert unfamiliarity(SKIN, None, Q, None, 250.0, FEATURE) is None
    assert unfamiliarity(SKIN, None, Q, None, 350.0, FEATURE) == "marginal"
    assert unfamiliarity(SKIN, None, Q, None, 450.0, FEATURE) == "marginal"
    assert unfamiliarity(FEW_SKIN, None, Q, None, 450.0, FEATURE) == "clear"
    assert unfamiliarity(SKIN, None, Q, None, 550.0, FEATURE) == "clear"
    assert unfamiliarity({"skin_fraction": 0.1, "noise_ratio": 0.2}, None, Q, None, 1.0, FEATURE)
    no_band = replace(FEATURE, unusual_threshold=None)  # a v1 gate.json: no marginal band
    assert unfamiliarity(SKIN, None, Q, None, 450.0, no_band) is None
    assert verdict((), False, (), unusual=True) == ("inconclusive", (UNUSUAL_IMAGE,))
    assert verdict(("blurred",), False, (), unusual=True) == ("rejected", ("blurred",))


def test_conformal_threshold_round_trips_in_triage_json(tmp_path: Path) -> None:
    entry = ConformalThreshold("m", "sha", 0.8, 0.95, "OOF", {"coverage": 0.951})
    config = TriageConfig(conformal={"effnet": entry})
    config.save(tmp_path)
    loaded = TriageConfig.load(tmp_path)
    assert loaded == config
    assert loaded.conformal_for(ModelInfo("m", "1", "sha")) == 0.8
    assert loaded.conformal_for(ModelInfo("m", "1", "other")) is None


def test_cross_fitted_conformal_covers_calibrated_predictions() -> None:
    rng = np.random.default_rng(3)
    n, k = 3000, 6
    probs = rng.dirichlet(np.full(k, 0.6), size=n)
    labels = np.asarray([rng.choice(k, p=p) for p in probs])  # calibrated by construction
    oof = Oof(np.log(probs), labels, [str(i) for i in range(n)], np.arange(n) % 5)
    result = cross_fitted_conformal(oof, 0.05)
    assert 0.93 <= result["coverage"] <= 0.97
    assert result["coverage_ci95"][0] < result["coverage"] < result["coverage_ci95"][1]
    assert result["mean_set_size"] > 1


def test_macro_f1_and_group_bootstrap() -> None:
    y = np.asarray([0, 0, 1, 1])
    assert macro_f1(y, y, 2) == 1.0
    assert macro_f1(y, np.asarray([0, 0, 0, 0]), 2) == pytest.approx((2 / 3 + 0) / 2)
    low, high = group_bootstrap(["a", "a", "b", "c"], lambda i: float(len(i)), draws=200)
    assert 3 <= low <= high <= 6


def test_few_skin_photos_that_v1_rejected_are_held_back_not_passed() -> None:
    banded = replace(FEATURE, unusual_few_skin_threshold=200.0)
    assert unfamiliarity(FEW_SKIN, None, Q, None, 250.0, banded) == "marginal"
    assert unfamiliarity(SKIN, None, Q, None, 250.0, banded) is None  # enough skin: ok
    assert unfamiliarity(FEW_SKIN, None, Q, None, 150.0, banded) is None


def test_gate_percentiles_must_be_ordered() -> None:
    from service.training.cv_gate import GatePercentiles

    GatePercentiles()
    with pytest.raises(ValueError):
        GatePercentiles(reject=99.0, soft=99.5)
    with pytest.raises(ValueError):
        GatePercentiles(soft=95.0, unusual_few_skin=96.0)


def test_ensemble_weights_are_fitted_out_of_fold() -> None:
    from service.evaluation.ensemble_cv import cross_fitted_ensemble, simplex

    assert len(simplex(2)) == 21 and all(abs(sum(w) - 1) < 1e-9 for w in simplex(3))
    rng = np.random.default_rng(5)
    n = 1200
    labels = rng.integers(0, 6, n)
    strong = rng.normal(0, 1, (n, 6))
    strong[np.arange(n), labels] += 3.0
    noise = rng.normal(0, 1, (n, 6))
    oof = Oof(strong, labels, [str(i // 2) for i in range(n)], (np.arange(n) // 2) % 5)
    result = cross_fitted_ensemble([strong, noise], oof, [str(c) for c in range(6)])
    assert result["weights"][0] >= 0.8  # the informative member carries the ensemble
    assert len(result["fold_weights"]) == 5
    assert result["ensemble"]["macro_f1"] >= result["members"][1]["macro_f1"]
    assert not result["beats_best_single"] or result["ensemble"]["macro_f1"] > max(
        m["macro_f1"] for m in result["members"]
    )


def test_weighted_ensemble_classifier_mixes_calibrated_members() -> None:
    from service.pipeline.classifier import EnsembleClassifier

    class Member:
        classes = ("A", "B")

        def __init__(self, p: float, name: str) -> None:
            self.p, self.info = p, ModelInfo(name, "1", name)

        def probabilities(self, images: object) -> np.ndarray:
            return np.asarray([[self.p, 1 - self.p]])

        def logits(self, images: object) -> np.ndarray:
            return np.log(self.probabilities(images))

    members = [Member(0.9, "a"), Member(0.1, "b")]
    weighted = EnsembleClassifier(members, weights=[3, 1])  # type: ignore[list-item]
    assert weighted.probabilities([])[0, 0] == pytest.approx(0.7)
    assert EnsembleClassifier(members).probabilities([])[0, 0] == pytest.approx(0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EnsembleClassifier(members, weights=[1.0])  # type: ignore[arg-type]
    # the screening path (one pass of each member) mixes with the same weights
    from service.pipeline.ood import forward

    one_pass = forward(weighted, [])
    assert one_pass.probabilities == pytest.approx(weighted.probabilities([]))
    assert one_pass.max_logit[0] == pytest.approx(np.log(0.7))
