"""Temperature scaling (Guo et al. 2017): one scalar T fitted by minimising NLL."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def negative_log_likelihood(logits: FloatArray, y_true: IntArray, temperature: float) -> float:
    """Mean NLL of the true labels under softmax(logits / T)."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(y_true)), y_true]))


def fit_temperature(
    logits: FloatArray, y_true: IntArray, low: float = 0.05, high: float = 20.0
) -> float:
    """The T in [low, high] that minimises NLL, by golden-section search on log T.

    NLL is unimodal in log T for fixed logits, so the search converges to the optimum.
    """
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(80):
        if negative_log_likelihood(logits, y_true, math.exp(c)) < negative_log_likelihood(
            logits, y_true, math.exp(d)
        ):
            b = d
        else:
            a = c
        c, d = b - ratio * (b - a), a + ratio * (b - a)
    return round(math.exp((a + b) / 2), 4)
