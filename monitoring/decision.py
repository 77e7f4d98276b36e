"""When a feature is drifting: effect size AND evidence AND enough data.

A live window is flagged only if all three hold:

* ``KL >= kl_threshold`` (effect size). Without it, a p-value alone alarms on any tiny shift in
  a huge window: with thousands of rows the G-test rejects differences nobody cares about, and
  even the sampling noise of the held-out data itself against the training data.
* ``p_value < alpha`` (evidence). Without it, KL alone alarms on small windows: with ``k`` bins
  and no drift at all, the expected KL of a window of ``N`` rows is about ``(k - 1) / (2 N)``
  (``2 N KL`` is asymptotically chi-squared with ``k - 1`` degrees of freedom), which for 10-12
  bins and a few hundred rows is already close to the threshold. Smoothing adds a little more:
  the outer bins hold no training rows, so ``a / (N + k a)`` of live mass there costs KL too.
* ``live_total >= min_samples`` (enough data). The p-value rests on the chi-squared
  approximation of G, which needs several expected rows per bin; below that its false-alarm
  rate is no longer the advertised ``alpha``, and a window of a few dozen rows is as likely
  to be a burst from one client as a change of the population. The worker reports such
  windows as insufficient data instead of guessing.

Thresholds: for a small shift KL is about PSI / 2 (PSI is KL in both directions), so
``kl_threshold = 0.05`` corresponds to the PSI of 0.1 that practitioners call a moderate shift,
and ``severe_kl_threshold = 0.125`` to PSI 0.25, the usual "significant shift" level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from monitoring.divergence import BatchComparison, BinComparison

Severity = Literal["none", "warning", "severe"]


@dataclass(frozen=True)
class DriftRule:
    kl_threshold: float = 0.05
    severe_kl_threshold: float = 0.125
    alpha: float = 0.01
    min_samples: int = 200

    def __post_init__(self) -> None:
        if not (np.isfinite(self.kl_threshold) and self.kl_threshold >= 0):
            raise ValueError("kl_threshold must be a finite number >= 0")
        if not (np.isfinite(self.severe_kl_threshold) and self.severe_kl_threshold >= self.kl_threshold):
            raise ValueError("severe_kl_threshold must be finite and at least kl_threshold")
        if not 0 < self.alpha <= 1:
            raise ValueError("alpha must lie in (0, 1]")
        if self.min_samples < 0:
            raise ValueError("min_samples must be >= 0")

    def _drifting(self, kl: np.ndarray, p_value: np.ndarray, live_total: np.ndarray) -> np.ndarray:
        return (
            (np.asarray(kl) >= self.kl_threshold)
            & (np.asarray(p_value) < self.alpha)
            & (np.asarray(live_total) >= self.min_samples)
        )

    def is_drifting(self, c: BinComparison) -> bool:
        return bool(self._drifting(c.kl, c.p_value, c.live_total))

    def drifting(self, batch: BatchComparison) -> np.ndarray:
        """The same rule applied to every window of a batch: a boolean array."""
        return self._drifting(batch.kl, batch.p_value, batch.live_total)

    def severity(self, c: BinComparison) -> Severity:
        if not self.is_drifting(c):
            return "none"
        return "severe" if c.kl >= self.severe_kl_threshold else "warning"
