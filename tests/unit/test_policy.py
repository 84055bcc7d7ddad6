"""Clinical policy, decided once: the verdict and the triage decision (referral)."""

from __future__ import annotations

import numpy as np
import pytest

from service.pipeline.policy import (
    candidates,
    confidence_reasons,
    referral,
    runner_ups,
    verdict,
)
from tests.support.factories import classification, gate


@pytest.mark.parametrize(
    ("quality", "not_skin", "confidence", "expected"),
    [
        ((), False, (), ("ok", ())),
        ((), False, ("low_confidence",), ("inconclusive", ("low_confidence",))),
        (("blurred",), False, ("ambiguous",), ("rejected", ("blurred",))),
        ((), True, ("ambiguous",), ("rejected", ("not_skin",))),
        (("too_dark",), True, (), ("rejected", ("too_dark", "not_skin"))),
    ],
)
def test_rejection_wins_over_uncertainty(
    quality: tuple[str, ...], not_skin: bool, confidence: tuple[str, ...], expected: object
) -> None:
    assert verdict(quality, not_skin, confidence) == expected


def test_confidence_band() -> None:
    assert confidence_reasons(np.array([0.9, 0.05, 0.05]), 0.5, 0.1) == ()
    assert confidence_reasons(np.array([0.45, 0.40, 0.15]), 0.5, 0.1) == (
        "low_confidence",
        "ambiguous",
    )
    assert confidence_reasons(np.array([0.6, 0.55]), 0.5, 0.1) == ("ambiguous",)
    assert confidence_reasons(np.array([0.6, 0.5]), 0.5, 0.1) == ()  # exactly the margin


def test_carcinoma_at_the_threshold_is_urgent_whatever_its_rank() -> None:
    t = 0.05
    top = referral(classification("Carcinoma", 0.8), gate("ok"), t)
    assert (top.level, top.reasons, top.runner_up) == ("urgent", ("carcinoma_finding",), None)
    low = referral(classification("Milia", 0.8, Carcinoma=0.12), gate("ok"), t)
    assert (low.level, low.reasons, low.runner_up) == (
        "urgent",
        ("carcinoma_probability",),
        "Carcinoma",
    )
    assert low.runner_up_probability == 0.12 and low.threshold == t
    # fourth-ranked carcinoma still counts: rank does not matter, the threshold does
    fourth = referral(
        classification("Acne", 0.6, Rosacea=0.2, Eczema=0.1, Carcinoma=0.06), gate("ok"), t
    )
    assert fourth.level == "urgent" and fourth.runner_up == "Carcinoma"
    assert referral(classification("Milia", 0.8, Carcinoma=0.049), gate("ok"), t).level == "routine"
    # exactly at the threshold → urgent
    assert referral(classification("Milia", 0.8, Carcinoma=0.05), gate("ok"), t).level == "urgent"


def test_inconclusive_is_soon_unless_carcinoma_reaches_the_threshold() -> None:
    unsure = referral(
        classification("Acne", 0.45, Rosacea=0.4, Carcinoma=0.01),
        gate("inconclusive", "ambiguous"),
        0.05,
    )
    assert (unsure.level, unsure.reasons) == ("soon", ("inconclusive", "ambiguous"))
    risky = referral(
        classification("Acne", 0.45, Rosacea=0.3, Carcinoma=0.2),
        gate("inconclusive", "ambiguous"),
        0.05,
    )
    assert risky.level == "urgent" and risky.runner_up == "Carcinoma"


def test_a_rejected_photo_is_not_triaged_on_its_probabilities() -> None:
    rejected = referral(classification("Carcinoma", 0.9), gate("rejected", "not_skin"), 0.05)
    assert (rejected.level, rejected.reasons) == ("routine", ("photo_not_assessable",))
    assert rejected.as_json() == {"level": "routine", "reasons": ["photo_not_assessable"]}


def test_referral_json_names_the_runner_up() -> None:
    body = referral(classification("Milia", 0.8, Carcinoma=0.12), gate("ok"), 0.05).as_json()
    assert body == {
        "level": "urgent",
        "reasons": ["carcinoma_probability"],
        "runner_up": {"label": "Carcinoma", "probability": 0.12},
        "malignancy_threshold": 0.05,
    }


def test_runner_ups_and_candidates() -> None:
    c = classification("Eczema", 0.5, Rosacea=0.3, Acne=0.16)
    assert [label for label, _ in runner_ups(c)] == ["Rosacea", "Acne"]
    assert [label for label, _ in candidates(c)] == ["Eczema", "Rosacea", "Acne"]
    assert len(runner_ups(classification("Acne", 0.98))) == 0
