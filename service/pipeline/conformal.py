"""Split-conformal prediction sets over the calibrated class probabilities.

Score: 1 − p(class) (the "least ambiguous set-valued classifier", Sadinle et al. 2019). The
threshold q̂ is the ⌈(n+1)(1−α)⌉-th smallest score of the true class over n out-of-fold
photos (`service.training.cv_fit`). For exchangeable photos scored by the model that made the
scores, the true class is in the set with probability ≥ 1 − α, marginally (not per class). The
shipped model is trained on all those photos, so its coverage is an estimate (the cross-fitted
coverage in `triage.json`), not a guarantee. The set always holds the top class; a set of more
than one class makes the result `inconclusive` (`several_conditions`) and names the set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt


def prediction_set(probabilities: Mapping[str, float], threshold: float | None) -> tuple[str, ...]:
    """Classes with 1 − p ≤ `threshold`, most probable first (never empty); `()` unfitted."""
    if threshold is None or not probabilities:
        return ()
    order = sorted(probabilities.items(), key=lambda item: -item[1])
    members = [label for label, p in order if 1.0 - p <= threshold + 1e-12]
    return tuple(members) if members else (order[0][0],)


def conformal_threshold(
    true_class_probs: Sequence[float] | npt.NDArray[np.floating], alpha: float
) -> float:
    """q̂ from the calibrated probabilities of the true class of n calibration photos."""
    scores = np.sort(1.0 - np.asarray(true_class_probs, dtype=np.float64))
    n = scores.size
    if n == 0:
        raise ValueError("no calibration scores")
    rank = math.ceil((n + 1) * (1.0 - alpha))
    return 1.0 if rank > n else float(scores[rank - 1])
