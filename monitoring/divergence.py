"""Divergence statistics between live bin counts and the training (reference) bin counts.

For ``k`` bins (the two open-ended outer bins included), live counts ``n`` (total ``N``) and
reference counts ``m`` (total ``M``), with additive smoothing ``a``:

    p_i = (n_i + a) / (N + k a)        q_i = (m_i + a) / (M + k a)
    KL  = sum p_i ln(p_i / q_i)                       (live relative to reference)
    PSI = sum (p_i - q_i) ln(p_i / q_i)               (= KL(p||q) + KL(q||p))
    G   = 2 sum_{n_i > 0} n_i ln(n_i / (N q_i))       p_value = chi2.sf(G, k - 1)

Smoothing is what keeps every statistic finite: the outer bins hold no training rows by
construction, and a short live window leaves many bins empty. ``G`` compares the raw live
counts with the smoothed reference proportions, so it stays a proper likelihood-ratio statistic
of the live sample. Counts may be fractional because Prometheus' ``increase()`` extrapolates.

One implementation serves both entry points: :func:`compare_counts` is
:func:`compare_counts_batch` applied to a single window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import chi2

DEFAULT_SMOOTHING = 0.5


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class BinComparison:
    """The statistics of one live window against the reference, plus both proportion vectors."""

    kl: float
    psi: float
    g_statistic: float
    p_value: float
    out_of_range_ratio: float
    live_total: float
    live_proportions: np.ndarray
    reference_proportions: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "kl": float(self.kl),
            "psi": float(self.psi),
            "g_statistic": float(self.g_statistic),
            "p_value": float(self.p_value),
            "out_of_range_ratio": float(self.out_of_range_ratio),
            "live_total": float(self.live_total),
            "live_proportions": [float(x) for x in self.live_proportions],
            "reference_proportions": [float(x) for x in self.reference_proportions],
        }


@dataclass(frozen=True, eq=False)
class BatchComparison:
    """The statistics of ``w`` live windows against one reference: arrays of length ``w``.

    ``live_proportions`` has shape ``(w, k)``; ``reference_proportions`` has shape ``(k,)``.
    """

    kl: np.ndarray
    psi: np.ndarray
    g_statistic: np.ndarray
    p_value: np.ndarray
    out_of_range_ratio: np.ndarray
    live_total: np.ndarray
    live_proportions: np.ndarray
    reference_proportions: np.ndarray

    def __len__(self) -> int:
        return int(self.kl.shape[0])

    def window(self, i: int) -> BinComparison:
        return BinComparison(
            kl=float(self.kl[i]),
            psi=float(self.psi[i]),
            g_statistic=float(self.g_statistic[i]),
            p_value=float(self.p_value[i]),
            out_of_range_ratio=float(self.out_of_range_ratio[i]),
            live_total=float(self.live_total[i]),
            live_proportions=_frozen(self.live_proportions[i].copy()),
            reference_proportions=self.reference_proportions,
        )


def _counts(values: ArrayLike, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} counts must be numbers (integers or floats), got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} counts must be a {ndim}-dimensional array, got shape {array.shape}")
    array = array.astype(float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} counts must be finite (no NaN or infinity)")
    if np.any(array < 0):
        raise ValueError(f"{name} counts must be non-negative")
    return array


def _smoothing(smoothing: float) -> float:
    try:
        a = float(smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"smoothing must be a positive finite number, got {smoothing!r}") from None
    if not (np.isfinite(a) and a > 0):
        raise ValueError(f"smoothing must be a positive finite number, got {smoothing!r}")
    return a


def compare_counts_batch(
    live: ArrayLike, reference: ArrayLike, smoothing: float = DEFAULT_SMOOTHING
) -> BatchComparison:
    """Compare each row of ``live`` (shape ``(w, k)``) with the ``reference`` counts (``k``)."""
    n = _counts(live, "live", 2)
    m = _counts(reference, "reference", 1)
    a = _smoothing(smoothing)
    k = m.size
    if k == 0:
        raise ValueError("reference counts must have at least one bin")
    if n.shape[1] != k:
        raise ValueError(f"live counts have {n.shape[1]} bins but reference counts have {k}")
    if m.sum() <= 0:
        raise ValueError("reference counts are all zero: there is no training distribution to compare with")

    live_total = n.sum(axis=1)
    p = (n + a) / (live_total + k * a)[:, None]
    q = (m + a) / (m.sum() + k * a)
    log_ratio = np.log(p) - np.log(q)
    # Gibbs' inequality makes KL >= 0; only rounding can push it below.
    kl = np.maximum((p * log_ratio).sum(axis=1), 0.0)
    psi = ((p - q) * log_ratio).sum(axis=1)

    expected = live_total[:, None] * q
    occupied = n > 0
    ratio = np.divide(n, expected, out=np.ones_like(n), where=occupied)
    if k == 1:
        g, p_value = np.zeros_like(live_total), np.ones_like(live_total)
    else:
        # A sub-normalised q still gives sum_{n_i>0} n_i ln(n_i / (N q_i)) >= 0; clip rounding.
        g = np.maximum(2.0 * (n * np.log(ratio)).sum(axis=1), 0.0)
        p_value = chi2.sf(g, k - 1)

    outer = np.zeros(k, dtype=bool)
    outer[[0, -1]] = True
    outside = n[:, outer].sum(axis=1)
    out_of_range = np.divide(outside, live_total, out=np.zeros_like(outside), where=live_total > 0)

    return BatchComparison(
        kl=_frozen(kl),
        psi=_frozen(psi),
        g_statistic=_frozen(g),
        p_value=_frozen(p_value),
        out_of_range_ratio=_frozen(out_of_range),
        live_total=_frozen(live_total),
        live_proportions=_frozen(p),
        reference_proportions=_frozen(q),
    )


def compare_counts(
    live: ArrayLike, reference: ArrayLike, smoothing: float = DEFAULT_SMOOTHING
) -> BinComparison:
    """Compare one window of live bin counts with the reference bin counts (same bins)."""
    return compare_counts_batch(_counts(live, "live", 1)[None, :], reference, smoothing).window(0)
