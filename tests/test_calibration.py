"""Calibration of the drift rule on the real data: false alarms without drift, power with drift.

Live windows are bootstrap samples of held-out rows (never seen in training), binned with the
reference bins built from the training split. Each window is a set of rows, so all features of a
window come from the same rows, as in production. Seeded, so the rates below are reproducible.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest

import train
from monitoring.decision import DriftRule
from monitoring.divergence import BatchComparison, compare_counts_batch
from monitoring.profile import HistogramProfile, bin_counts, bin_index
from service.schemas import FEATURE_NAMES

SEED = 20240601
WINDOWS = 2000
WINDOW_SIZES = (50, 200, 1000, 5000)
MAX_FALSE_ALARM_RATE = 0.02
SHIFT_FEATURE, SHIFT_FACTOR = "MedInc", 1.25


@pytest.fixture(scope="module")
def profiles(split: train.Split) -> dict[str, HistogramProfile]:
    return {name: HistogramProfile.from_values(split.x_train[:, j]) for j, name in enumerate(FEATURE_NAMES)}


def draw_windows(n_rows: int, size: int, seed: int) -> np.ndarray:
    """Row indices of WINDOWS bootstrap windows, shape (WINDOWS, size)."""
    return np.random.default_rng(seed).integers(0, n_rows, size=(WINDOWS, size), dtype=np.int32)


def window_counts(profile: HistogramProfile, column: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Bin counts of every window, shape (windows, bins): the column is binned once."""
    k = profile.edges.size + 1
    offsets = k * np.arange(rows.shape[0], dtype=np.int32)[:, None]
    bins = bin_index(profile.edges, column).astype(np.int32)[rows] + offsets
    return np.bincount(bins.ravel(), minlength=rows.shape[0] * k).reshape(rows.shape[0], k)


def compare_windows(profiles: dict[str, HistogramProfile], x: np.ndarray, rows: np.ndarray) -> dict[str, BatchComparison]:
    return {
        name: compare_counts_batch(window_counts(profiles[name], x[:, j], rows), profiles[name].counts)
        for j, name in enumerate(FEATURE_NAMES)
    }


@pytest.fixture(scope="module")
def no_drift(profiles: dict[str, HistogramProfile], split: train.Split) -> Callable[[int], dict[str, BatchComparison]]:
    """Comparisons of held-out windows of a given size, computed once per size for the module."""

    @functools.cache
    def windows_of(size: int) -> dict[str, BatchComparison]:
        return compare_windows(profiles, split.x_test, draw_windows(len(split.x_test), size, SEED + size))

    return windows_of


def flag_rates(comparisons: dict[str, BatchComparison], rule: DriftRule) -> dict[str, float]:
    return {name: float(rule.drifting(c).mean()) for name, c in comparisons.items()}


def report(label: str, rates: dict[str, float], any_feature: float | None = None) -> None:
    body = "  ".join(f"{name} {rate:6.2%}" for name, rate in rates.items())
    tail = "" if any_feature is None else f"  | any feature {any_feature:6.2%}"
    print(f"\n{label}: {body}{tail}")


def test_window_counts_equal_binning_each_window(profiles: dict[str, HistogramProfile], split: train.Split) -> None:
    rows = draw_windows(len(split.x_test), 300, SEED)
    for j, name in enumerate(FEATURE_NAMES):
        counts = window_counts(profiles[name], split.x_test[:, j], rows)
        for w in (0, 1, WINDOWS - 1):
            np.testing.assert_array_equal(counts[w], bin_counts(profiles[name].edges, split.x_test[rows[w], j]))


@pytest.mark.parametrize("size", WINDOW_SIZES)
def test_no_drift_rarely_alarms(no_drift: Callable[[int], dict[str, BatchComparison]], size: int) -> None:
    rule = DriftRule()
    comparisons = no_drift(size)
    rates = flag_rates(comparisons, rule)
    any_feature = float(np.mean(np.any([rule.drifting(c) for c in comparisons.values()], axis=0)))
    report(f"no drift, N={size}", rates, any_feature)
    assert max(rates.values()) <= MAX_FALSE_ALARM_RATE, rates


@pytest.mark.parametrize("size", [200, 1000])
def test_a_shift_that_matters_is_caught_on_its_feature_only(
    profiles: dict[str, HistogramProfile], split: train.Split, size: int
) -> None:
    shifted = split.x_test.copy()
    shifted[:, FEATURE_NAMES.index(SHIFT_FEATURE)] *= SHIFT_FACTOR
    comparisons = compare_windows(profiles, shifted, draw_windows(len(shifted), size, SEED - size))
    rates = flag_rates(comparisons, DriftRule())
    report(f"{SHIFT_FEATURE} x {SHIFT_FACTOR}, N={size}", rates)
    assert rates[SHIFT_FEATURE] >= 0.95
    assert rates["Latitude"] <= MAX_FALSE_ALARM_RATE


@pytest.mark.parametrize(
    ("label", "rule", "size"),
    [
        ("p-value alone (no KL threshold)", DriftRule(kl_threshold=0.0, severe_kl_threshold=0.0), 5000),
        ("KL alone (alpha = 1)", DriftRule(alpha=1.0), 200),
    ],
)
def test_each_half_of_the_rule_is_needed(
    no_drift: Callable[[int], dict[str, BatchComparison]], label: str, rule: DriftRule, size: int
) -> None:
    """On the same no-drift windows, dropping the effect size or the evidence raises false alarms well above 2%."""
    rates = flag_rates(no_drift(size), rule)
    report(f"{label}, no drift, N={size}", rates)
    assert max(rates.values()) >= 5 * MAX_FALSE_ALARM_RATE, rates
