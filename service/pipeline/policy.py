"""Clinical policy, decided once: the verdict on an image and the referral/triage rules.

Every output reads these and none re-decides them: the summary, the narrators and their prompts,
the PDF, the FHIR resources and the JSON contract.

- `verdict`: rejection reasons (quality, not skin) win over uncertainty; uncertainty
  (`low_confidence`, `ambiguous`, `several_conditions` — a conformal prediction set of more
  than one class — or `unusual_image` — marginally unfamiliar to the model) makes a result
  `inconclusive`; no reason at all is `ok`.
- `referral`: the one triage decision (`urgent` | `soon` | `routine`, with reasons). `urgent`
  whenever P(Carcinoma) reaches the malignancy threshold fitted for the model (see
  `triage_config`), whatever its rank — a Milia 80 % / Carcinoma 12 % result is urgent and
  names the carcinoma runner-up; inconclusive otherwise → `soon`; a rejected photo →
  `routine` with reason `photo_not_assessable` (retake it, and see a clinician if the spot
  bleeds, grows or does not heal — the probabilities of a rejected photo mean nothing).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.pipeline.domain import Classification, GateOutcome, Referral, Status
from service.pipeline.quality import (
    AMBIGUOUS,
    LOW_CONFIDENCE,
    NOT_SKIN,
    SEVERAL_CONDITIONS,
    UNUSUAL_IMAGE,
)

#: Other classes at or above this probability are mentioned as runner-ups (at most two).
RUNNER_UP_MIN = 0.15
#: Inconclusive results list the top classes at or above this probability (two to three).
CANDIDATE_MIN = 0.05
CANCER = "Carcinoma"


def confidence_reasons(
    probabilities: npt.NDArray[np.floating],
    below: float,
    margin: float,
    prediction_set: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """`low_confidence`, `ambiguous` and/or `several_conditions` for one calibrated
    probability vector and its conformal prediction set."""
    top2 = np.sort(np.asarray(probabilities, dtype=np.float64))[::-1][:2]
    second = float(top2[1]) if top2.size > 1 else 0.0
    reasons = []
    if float(top2[0]) < below:
        reasons.append(LOW_CONFIDENCE)
    if float(top2[0]) - second < margin - 1e-9:  # tolerate float rounding at the bound
        reasons.append(AMBIGUOUS)
    if len(prediction_set) > 1:
        reasons.append(SEVERAL_CONDITIONS)
    return tuple(reasons)


def verdict(
    quality: tuple[str, ...],
    not_skin: bool,
    confidence: tuple[str, ...],
    unusual: bool = False,
) -> tuple[Status, tuple[str, ...]]:
    """Rejection reasons win over uncertainty; no reason at all is `ok`."""
    rejected = (*quality, NOT_SKIN) if not_skin else quality
    if rejected:
        return "rejected", rejected
    uncertain = (UNUSUAL_IMAGE, *confidence) if unusual else confidence
    if uncertain:
        return "inconclusive", uncertain
    return "ok", ()


def ranked(classification: Classification) -> list[tuple[str, float]]:
    """(class, probability) from the most to the least probable."""
    return sorted(classification.probabilities.items(), key=lambda item: -item[1])


def runner_ups(classification: Classification) -> list[tuple[str, float]]:
    """Up to two other classes close enough to the top one to mention."""
    return [(lbl, p) for lbl, p in ranked(classification)[1:3] if p >= RUNNER_UP_MIN]


def candidates(classification: Classification) -> list[tuple[str, float]]:
    """The classes to list when the result is inconclusive: the conformal prediction set when
    it holds several, else the top two or three."""
    order = ranked(classification)
    if len(classification.prediction_set) > 1:
        return [(lbl, p) for lbl, p in order if lbl in classification.prediction_set]
    return order[:2] + [(lbl, p) for lbl, p in order[2:3] if p >= CANDIDATE_MIN]


#: Reason codes of a referral (stable: they are in the JSON contract and the FHIR output).
CARCINOMA_FINDING = "carcinoma_finding"
CARCINOMA_PROBABILITY = "carcinoma_probability"
INCONCLUSIVE = "inconclusive"
PHOTO_NOT_ASSESSABLE = "photo_not_assessable"


def referral(
    classification: Classification, gate: GateOutcome, malignancy_threshold: float
) -> Referral:
    """The one triage decision every output reads (see the module docstring)."""
    if gate.status == "rejected":
        return Referral("routine", (PHOTO_NOT_ASSESSABLE,))
    p_cancer = float(classification.probabilities.get(CANCER, 0.0))
    if classification.label == CANCER:
        return Referral("urgent", (CARCINOMA_FINDING,), threshold=malignancy_threshold)
    if p_cancer >= malignancy_threshold:
        return Referral(
            "urgent",
            (CARCINOMA_PROBABILITY,),
            runner_up=CANCER,
            runner_up_probability=p_cancer,
            threshold=malignancy_threshold,
        )
    if gate.status == "inconclusive":
        return Referral("soon", (INCONCLUSIVE, *gate.reasons), threshold=malignancy_threshold)
    return Referral("routine", (), threshold=malignancy_threshold)
