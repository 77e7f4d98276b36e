"""Independent reference computations of the drift statistics, with scipy, for the tests."""

from __future__ import annotations

import numpy as np
from scipy.stats import entropy, power_divergence

A = 0.5


def smoothed(counts: np.ndarray, a: float = A) -> np.ndarray:
    return (counts + a) / np.sum(counts + a)


def reference_kl(live: np.ndarray, ref: np.ndarray, a: float = A) -> float:
    """scipy.stats.entropy normalises its arguments itself, so it also checks the smoothing."""
    return float(entropy(live + a, ref + a))


def reference_psi(live: np.ndarray, ref: np.ndarray, a: float = A) -> float:
    """PSI = sum (p - q) ln(p / q) = KL(p || q) + KL(q || p)."""
    return float(entropy(live + a, ref + a) + entropy(ref + a, live + a))


def reference_g(live: np.ndarray, ref: np.ndarray, a: float = A) -> tuple[float, float]:
    """Log-likelihood ratio test of the live counts against the smoothed reference proportions.

    power_divergence uses xlogy, so bins with n_i = 0 contribute nothing, as in the definition.
    Rounding can leave its statistic a hair below 0 when live matches the reference, and then
    its p-value is NaN; the p-value of a statistic of 0 is 1.
    """
    result = power_divergence(live, f_exp=live.sum() * smoothed(ref, a), lambda_="log-likelihood")
    g = float(result.statistic)
    return g, (float(result.pvalue) if g > 0 else 1.0)
