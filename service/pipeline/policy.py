"""Clinical policy, decided once: the verdict on an image and the referral/triage rules.

Every output reads these and none re-decides them: the summary, the narrators and their prompts,
the PDF, the FHIR resources and the JSON contract.

- `verdict`: rejection reasons (quality, not skin) win over uncertainty; uncertainty
  (`low_confidence`, `ambiguous`) makes a result `inconclusive`; no reason at all is `ok`.
- `review_advised`: prompt in-person review for inconclusive results and whenever carcinoma is
  the finding or a runner-up.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.pipeline.domain import Classification, GateOutcome, Status
from service.pipeline.quality import AMBIGUOUS, LOW_CONFIDENCE, NOT_SKIN

#: Other classes at or above this probability are mentioned as runner-ups (at most two).
RUNNER_UP_MIN = 0.15
#: Inconclusive results list the top classes at or above this probability (two to three).
CANDIDATE_MIN = 0.05
CANCER = "Carcinoma"


def confidence_reasons(
    probabilities: npt.NDArray[np.floating], below: float, margin: float
) -> tuple[str, ...]:
    """`low_confidence` and/or `ambiguous` for one calibrated probability vector."""
    top2 = np.sort(np.asarray(probabilities, dtype=np.float64))[::-1][:2]
    second = float(top2[1]) if top2.size > 1 else 0.0
    reasons = []
    if float(top2[0]) < below:
        reasons.append(LOW_CONFIDENCE)
    if float(top2[0]) - second < margin - 1e-9:  # tolerate float rounding at the bound
        reasons.append(AMBIGUOUS)
    return tuple(reasons)


def verdict(
    quality: tuple[str, ...], not_skin: bool, confidence: tuple[str, ...]
) -> tuple[Status, tuple[str, ...]]:
    """Rejection reasons win over uncertainty; no reason at all is `ok`."""
    rejected = (*quality, NOT_SKIN) if not_skin else quality
    if rejected:
        return "rejected", rejected
    if confidence:
        return "inconclusive", confidence
    return "ok", ()


def ranked(classification: Classification) -> list[tuple[str, float]]:
    """(class, probability) from the most to the least probable."""
    return sorted(classification.probabilities.items(), key=lambda item: -item[1])


def runner_ups(classification: Classification) -> list[tuple[str, float]]:
    """Up to two other classes close enough to the top one to mention."""
    return [(lbl, p) for lbl, p in ranked(classification)[1:3] if p >= RUNNER_UP_MIN]


def candidates(classification: Classification) -> list[tuple[str, float]]:
    """The top two or three classes to list when the result is inconclusive."""
    order = ranked(classification)
    return order[:2] + [(lbl, p) for lbl, p in order[2:3] if p >= CANDIDATE_MIN]


def review_advised(classification: Classification, gate: GateOutcome) -> bool:
    """True for inconclusive results and whenever carcinoma is the finding or a runner-up."""
    if gate.status != "ok":
        return gate.status == "inconclusive"
    labels = {classification.label, *(lbl for lbl, _ in runner_ups(classification))}
    return CANCER in labels
