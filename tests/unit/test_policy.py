"""Clinical policy, decided once: the verdict and when in-person review is advised."""

from __future__ import annotations

import numpy as np
import pytest

from service.pipeline.policy import (
    candidates,
    confidence_reasons,
    review_advised,
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


def test_review_advised_for_carcinoma_as_finding_or_runner_up() -> None:
    assert review_advised(classification("Carcinoma", 0.8), gate("ok"))
    assert review_advised(classification("Keratosis", 0.6, Carcinoma=0.3), gate("ok"))
    assert not review_advised(classification("Acne", 0.9), gate("ok"))
    assert review_advised(classification("Acne", 0.45, Rosacea=0.4), gate("inconclusive"))
    assert not review_advised(classification("Carcinoma", 0.9), gate("rejected", "not_skin"))


def test_runner_ups_and_candidates() -> None:
    c = classification("Eczema", 0.5, Rosacea=0.3, Acne=0.16)
    assert [label for label, _ in runner_ups(c)] == ["Rosacea", "Acne"]
    assert [label for label, _ in candidates(c)] == ["Eczema", "Rosacea", "Acne"]
    assert len(runner_ups(classification("Acne", 0.98))) == 0
