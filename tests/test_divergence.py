"""Divergence statistics against independent computations (scipy), edge cases, the drift rule."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from monitoring.decision import DriftRule
from monitoring.divergence import BinComparison, compare_counts, compare_counts_batch
from monitoring.profile import bin_counts, bin_index, quantile_edges
from tests.reference_stats import A, reference_g, reference_kl, reference_psi, smoothed


def assert_all_finite(c: BinComparison) -> None:
    values = [c.kl, c.psi, c.g_statistic, c.p_value, c.out_of_range_ratio, c.live_total]
    assert all(math.isfinite(v) for v in values), c.to_dict()
    assert np.all(np.isfinite(c.live_proportions)) and np.all(np.isfinite(c.reference_proportions))


# --- exact values ---------------------------------------------------------------------------


def test_hand_computed_example_all_live_values_in_one_bin() -> None:
    c = compare_counts([0, 9, 0], [2, 2, 2])
    p = np.array([0.5, 9.5, 0.5]) / 10.5
    assert c.live_proportions == pytest.approx(p, rel=1e-12)
    assert c.reference_proportions == pytest.approx([1 / 3] * 3, rel=1e-12)
    assert c.kl == pytest.approx(2 * (1 / 21) * math.log(3 / 21) + (19 / 21) * math.log(57 / 21), rel=1e-12)
    assert c.psi == pytest.approx(2 * (1 / 21 - 1 / 3) * math.log(3 / 21) + (19 / 21 - 1 / 3) * math.log(57 / 21), rel=1e-12)
    # G = 2 * 9 * ln(9 / (9 * 1/3)); with 2 degrees of freedom chi2.sf(x) = exp(-x / 2).
    assert c.g_statistic == pytest.approx(18 * math.log(3), rel=1e-12)
    assert c.p_value == pytest.approx(3.0**-9, rel=1e-9)
    assert c.out_of_range_ratio == 0.0
    assert c.live_total == 9.0


def test_empty_live_window_is_finite_and_uniform() -> None:
    ref = np.array([1.0, 3.0, 6.0, 0.0])
    c = compare_counts([0, 0, 0, 0], ref)
    q = (ref + A) / (10 + 4 * A)
    assert c.live_proportions == pytest.approx([0.25] * 4, rel=1e-12)
    assert c.kl == pytest.approx(float(np.sum(0.25 * np.log(0.25 / q))), rel=1e-12)
    assert c.psi == pytest.approx(float(np.sum((0.25 - q) * np.log(0.25 / q))), rel=1e-12)
    assert (c.g_statistic, c.p_value, c.out_of_range_ratio, c.live_total) == (0.0, 1.0, 0.0, 0.0)


def test_identical_uniform_counts_show_no_divergence_at_all() -> None:
    c = compare_counts([10] * 5, [10] * 5)
    assert (c.kl, c.psi, c.g_statistic, c.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_all_live_values_out_of_range() -> None:
    c = compare_counts([4, 0, 0, 0, 6], [0, 50, 30, 20, 0])
    assert c.out_of_range_ratio == 1.0
    assert_all_finite(c)
    assert c.kl == pytest.approx(reference_kl(np.array([4, 0, 0, 0, 6.0]), np.array([0, 50, 30, 20, 0.0])), rel=1e-12)
    assert c.p_value < 1e-12


def test_out_of_range_ratio_counts_only_the_outer_bins() -> None:
    assert compare_counts([1, 5, 2, 3], [1, 1, 1, 1]).out_of_range_ratio == pytest.approx(4 / 11)


def test_constant_training_feature_three_bins() -> None:
    """quantile_edges of a constant column gives edges [nextafter(v, -inf), v]: bins (below, v, above)."""
    same = compare_counts([0, 1000, 0], [0, 1000, 0])
    assert same.kl == 0.0 and same.psi == 0.0
    # q_middle = 1000.5 / 1001.5, so G = 2000 ln(1001.5 / 1000.5); two degrees of freedom.
    assert same.g_statistic == pytest.approx(2000 * math.log(1001.5 / 1000.5), rel=1e-9)
    assert same.p_value == pytest.approx(math.exp(-same.g_statistic / 2), rel=1e-12)

    moved = compare_counts([300, 0, 0], [0, 1000, 0])
    assert_all_finite(moved)
    assert moved.out_of_range_ratio == 1.0
    assert moved.kl == pytest.approx(reference_kl(np.array([300.0, 0, 0]), np.array([0, 1000.0, 0])), rel=1e-12)


def test_two_bins_both_outer() -> None:
    c = compare_counts([3, 0], [5, 5])
    assert c.out_of_range_ratio == 1.0
    g, p = reference_g(np.array([3.0, 0.0]), np.array([5.0, 5.0]))
    assert c.g_statistic == pytest.approx(g, rel=1e-12) == pytest.approx(6 * math.log(2), rel=1e-12)
    assert c.p_value == pytest.approx(p, rel=1e-12)


def test_single_bin_has_nothing_to_compare() -> None:
    c = compare_counts([7], [3])
    assert (c.kl, c.psi, c.g_statistic, c.p_value, c.out_of_range_ratio) == (0.0, 0.0, 0.0, 1.0, 1.0)


def test_fractional_counts_from_prometheus_increase() -> None:
    live = np.array([0.5, 10.25, 3.3333, 0.0, 1e-3])
    ref = np.array([0.0, 400.0, 350.0, 250.0, 0.0])
    c = compare_counts(live, ref)
    g, p = reference_g(live, ref)
    assert c.kl == pytest.approx(reference_kl(live, ref), rel=1e-12)
    assert c.psi == pytest.approx(reference_psi(live, ref), rel=1e-12)
    assert c.g_statistic == pytest.approx(g, rel=1e-12)
    assert c.p_value == pytest.approx(p, rel=1e-9)
    assert c.live_total == pytest.approx(live.sum())
    assert c.out_of_range_ratio == pytest.approx((0.5 + 1e-3) / live.sum())


def test_huge_counts_stay_finite() -> None:
    c = compare_counts([1e15, 0, 0], [0, 0, 1e15])
    assert_all_finite(c)
    assert c.kl == pytest.approx(reference_kl(np.array([1e15, 0, 0]), np.array([0, 0, 1e15])), rel=1e-9)
    assert c.p_value == 0.0


def test_smoothing_parameter_is_used() -> None:
    live, ref = np.array([0.0, 9.0, 1.0]), np.array([5.0, 3.0, 2.0])
    c = compare_counts(live, ref, smoothing=2.0)
    assert c.live_proportions == pytest.approx(smoothed(live, 2.0), rel=1e-12)
    assert c.kl == pytest.approx(reference_kl(live, ref, 2.0), rel=1e-12)
    assert c.kl != pytest.approx(compare_counts(live, ref).kl, rel=1e-3)


# --- result objects -------------------------------------------------------------------------


def test_to_dict_is_plain_json() -> None:
    c = compare_counts(np.array([1, 2, 3], dtype=np.int64), np.array([3, 2, 1], dtype=np.int64))
    d = json.loads(json.dumps(c.to_dict()))
    assert d == c.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(BinComparison)}
    assert all(type(d[k]) is float for k in ("kl", "psi", "g_statistic", "p_value", "out_of_range_ratio", "live_total"))
    assert d["live_proportions"] == pytest.approx([1.5 / 7.5, 2.5 / 7.5, 3.5 / 7.5])
    assert all(type(x) is float for x in d["live_proportions"] + d["reference_proportions"])


def test_result_is_immutable() -> None:
    c = compare_counts([1, 2], [2, 1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.kl = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        c.live_proportions[0] = 1.0


def test_batch_rows_equal_single_comparisons() -> None:
    live = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 40, 0, 0], [7.5, 0.25, 3, 9]])
    ref = np.array([0, 30, 20, 0])
    batch = compare_counts_batch(live, ref)
    assert len(batch) == 4
    for i, row in enumerate(live):
        assert batch.window(i).to_dict() == compare_counts(row, ref).to_dict()


# --- input validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("live", "reference", "message"),
    [
        ([1, 2, 3], [1, 2], "3 bins but reference counts have 2"),
        ([1, -1, 3], [1, 2, 3], "live counts must be non-negative"),
        ([1, 2, 3], [1, -0.5, 3], "reference counts must be non-negative"),
        ([1, float("nan"), 3], [1, 2, 3], "live counts must be finite"),
        ([1, 2, 3], [1, float("inf"), 3], "reference counts must be finite"),
        (["1", "2"], [1, 2], "live counts must be numbers"),
        ([True, False], [1, 2], "live counts must be numbers"),
        ([1, None], [1, 2], "live counts must be numbers"),
        ([[1, 2], [3, 4]], [1, 2], "1-dimensional"),
        ([1, 2], 3, "reference counts must be a 1-dimensional"),
        ([], [], "at least one bin"),
        ([1, 2], [0, 0], "reference counts are all zero"),
    ],
)
def test_invalid_counts_are_refused(live: object, reference: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare_counts(live, reference)  # type: ignore[arg-type]


@pytest.mark.parametrize("smoothing", [0.0, -0.5, float("nan"), float("inf"), "half"])
def test_invalid_smoothing_is_refused(smoothing: object) -> None:
    with pytest.raises(ValueError, match="smoothing must be a positive finite number"):
        compare_counts([1, 2], [2, 1], smoothing=smoothing)  # type: ignore[arg-type]


def test_batch_requires_a_matrix_of_windows() -> None:
    with pytest.raises(ValueError, match="live counts must be a 2-dimensional"):
        compare_counts_batch([1, 2], [2, 1])
    with pytest.raises(ValueError, match="2 bins but reference counts have 3"):
        compare_counts_batch([[1, 2]], [2, 1, 0])


# --- properties -----------------------------------------------------------------------------

integer_count = st.integers(min_value=0, max_value=10**6)
float_count = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)
any_count = st.one_of(integer_count, float_count)


@st.composite
def count_pair(draw: st.DrawFn, min_bins: int = 1) -> tuple[np.ndarray, np.ndarray]:
    k = draw(st.integers(min_value=min_bins, max_value=14))
    live = np.array(draw(st.lists(any_count, min_size=k, max_size=k)), dtype=float)
    ref = np.array(draw(st.lists(any_count, min_size=k, max_size=k)), dtype=float)
    if ref.sum() == 0:
        ref[draw(st.integers(0, k - 1))] = draw(st.integers(1, 10**6))
    return live, ref


@given(count_pair())
def test_statistics_match_scipy_and_stay_in_range(pair: tuple[np.ndarray, np.ndarray]) -> None:
    live, ref = pair
    c = compare_counts(live, ref)
    assert_all_finite(c)
    assert c.kl >= 0 and c.psi >= 0 and c.g_statistic >= 0
    assert 0 <= c.p_value <= 1
    assert 0 <= c.out_of_range_ratio <= 1
    assert c.kl == pytest.approx(reference_kl(live, ref), rel=1e-9, abs=1e-12)
    assert c.psi == pytest.approx(reference_psi(live, ref), rel=1e-9, abs=1e-12)
    assert c.live_proportions == pytest.approx(smoothed(live), rel=1e-12)
    assert c.reference_proportions == pytest.approx(smoothed(ref), rel=1e-12)
    if live.sum() > 0:
        assert c.out_of_range_ratio == pytest.approx((live[0] + (live[-1] if live.size > 1 else 0)) / live.sum())


@given(count_pair(min_bins=2))
def test_g_test_matches_scipy_power_divergence(pair: tuple[np.ndarray, np.ndarray]) -> None:
    live, ref = pair
    c = compare_counts(live, ref)
    if live.sum() == 0:
        assert (c.g_statistic, c.p_value) == (0.0, 1.0)
        return
    g, p = reference_g(live, ref)
    # the terms n_i ln(n_i / N q_i) reach ~N ln(N), so rounding is relative to N, not to G
    assert c.g_statistic == pytest.approx(g, rel=1e-9, abs=1e-12 * live.sum() * max(1.0, math.log(live.sum() + 1)) + 1e-12)
    assert c.p_value == pytest.approx(float(chi2.sf(c.g_statistic, live.size - 1)), rel=1e-12)
    assert c.p_value == pytest.approx(p, rel=1e-6, abs=1e-9)


@given(count_pair())
def test_identical_counts_have_zero_kl_and_psi(pair: tuple[np.ndarray, np.ndarray]) -> None:
    _, ref = pair
    c = compare_counts(ref, ref)
    assert c.kl == pytest.approx(0.0, abs=1e-12)
    assert c.psi == pytest.approx(0.0, abs=1e-12)


@given(count_pair(), st.floats(min_value=1e-3, max_value=1e3))
def test_scaling_counts_and_smoothing_together_keeps_proportions(
    pair: tuple[np.ndarray, np.ndarray], scale: float
) -> None:
    """(c n_i + c a) / (c N + k c a) = p_i: KL, PSI and proportions are unchanged, G scales by c."""
    live, ref = pair
    base = compare_counts(live, ref, smoothing=A)
    scaled = compare_counts(scale * live, scale * ref, smoothing=scale * A)
    assert scaled.live_proportions == pytest.approx(base.live_proportions, rel=1e-9)
    assert scaled.reference_proportions == pytest.approx(base.reference_proportions, rel=1e-9)
    assert scaled.kl == pytest.approx(base.kl, rel=1e-7, abs=1e-12)
    assert scaled.psi == pytest.approx(base.psi, rel=1e-7, abs=1e-12)
    assert scaled.out_of_range_ratio == pytest.approx(base.out_of_range_ratio, rel=1e-9)
    assert scaled.live_total == pytest.approx(scale * base.live_total, rel=1e-12)
    g_tolerance = 1e-9 * scale * (live.sum() * max(1.0, math.log(live.sum() + 1)) + 1)
    assert scaled.g_statistic == pytest.approx(scale * base.g_statistic, rel=1e-7, abs=g_tolerance)


@given(count_pair())
def test_psi_is_symmetric(pair: tuple[np.ndarray, np.ndarray]) -> None:
    live, ref = pair
    if live.sum() == 0:
        live = live + 1
    assert compare_counts(live, ref).psi == pytest.approx(compare_counts(ref, live).psi, rel=1e-12, abs=1e-15)


@given(count_pair(), st.randoms(use_true_random=False))
def test_statistics_ignore_bin_order(pair: tuple[np.ndarray, np.ndarray], rnd: object) -> None:
    live, ref = pair
    order = list(range(live.size))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    a, b = compare_counts(live, ref), compare_counts(live[order], ref[order])
    assert b.kl == pytest.approx(a.kl, rel=1e-9, abs=1e-12)
    assert b.psi == pytest.approx(a.psi, rel=1e-9, abs=1e-12)
    assert b.p_value == pytest.approx(a.p_value, rel=1e-6, abs=1e-12)


@settings(max_examples=50)
@given(st.integers(1, 10).flatmap(lambda k: st.tuples(
    st.lists(st.lists(any_count, min_size=k, max_size=k), min_size=1, max_size=6),
    st.lists(integer_count, min_size=k, max_size=k).filter(lambda r: sum(r) > 0),
)))
def test_batch_equals_one_window_at_a_time(windows_and_ref: tuple[list[list[float]], list[int]]) -> None:
    windows, ref = windows_and_ref
    batch = compare_counts_batch(np.array(windows, dtype=float), ref)
    for i, row in enumerate(windows):
        one, alone = batch.window(i).to_dict(), compare_counts(row, ref).to_dict()
        assert set(one) == set(alone)
        for name, value in alone.items():
            assert one[name] == pytest.approx(value, rel=1e-12, abs=1e-300), name


# --- the decision rule ----------------------------------------------------------------------


def comparison(kl: float, p_value: float, live_total: float) -> BinComparison:
    return BinComparison(
        kl=kl, psi=2 * kl, g_statistic=0.0, p_value=p_value, out_of_range_ratio=0.0,
        live_total=live_total, live_proportions=np.ones(1), reference_proportions=np.ones(1),
    )


def test_rule_defaults() -> None:
    assert DriftRule() == DriftRule(kl_threshold=0.05, severe_kl_threshold=0.125, alpha=0.01, min_samples=200)


@pytest.mark.parametrize(
    ("kl", "p_value", "live_total", "expected"),
    [
        (0.05, 0.0099, 200, "warning"),  # every boundary on its inclusive side
        (0.1249, 1e-6, 5000, "warning"),
        (0.125, 1e-6, 5000, "severe"),
        (3.0, 0.0, 1e6, "severe"),
        (0.0499, 1e-6, 5000, "none"),  # small effect, however certain
        (0.5, 0.01, 5000, "none"),  # large effect, not significant (p must be strictly below alpha)
        (0.5, 1e-6, 199, "none"),  # too few rows
        (0.5, 1e-6, 199.9, "none"),  # fractional totals from increase() count as they are
    ],
)
def test_rule_needs_effect_evidence_and_data(kl: float, p_value: float, live_total: float, expected: str) -> None:
    rule = DriftRule()
    c = comparison(kl, p_value, live_total)
    assert rule.severity(c) == expected
    assert rule.is_drifting(c) is (expected != "none")


def test_rule_thresholds_are_parameters() -> None:
    c = comparison(0.02, 0.03, 60)
    assert not DriftRule().is_drifting(c)
    assert DriftRule(kl_threshold=0.01, severe_kl_threshold=0.02, alpha=0.05, min_samples=50).severity(c) == "severe"
    assert DriftRule(kl_threshold=0.01, severe_kl_threshold=0.03, alpha=0.05, min_samples=50).severity(c) == "warning"


def test_rule_on_real_comparisons() -> None:
    rule = DriftRule()
    reference = np.array([0, 100, 100, 100, 100, 0]) * 40
    assert rule.severity(compare_counts(reference // 10, reference)) == "none"
    assert rule.severity(compare_counts([0, 250, 250, 0, 0, 0], reference)) == "severe"
    assert rule.severity(compare_counts([0, 25, 25, 0, 0, 0], reference)) == "none"  # 50 rows


def test_rule_on_a_batch_matches_window_by_window() -> None:
    live = np.array([[0, 250, 250, 0, 0, 0], [0, 100, 100, 100, 100, 0], [0, 25, 25, 0, 0, 0], [0, 130, 100, 90, 80, 0]])
    batch = compare_counts_batch(live, np.array([0, 100, 100, 100, 100, 0]) * 40)
    rule = DriftRule()
    expected = [rule.is_drifting(batch.window(i)) for i in range(len(batch))]
    assert rule.drifting(batch).tolist() == expected == [True, False, False, False]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kl_threshold": -0.1},
        {"kl_threshold": float("nan")},
        {"kl_threshold": 0.2, "severe_kl_threshold": 0.1},
        {"alpha": 0.0},
        {"alpha": 1.5},
        {"min_samples": -1},
    ],
)
def test_rule_refuses_nonsense_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DriftRule(**kwargs)


# --- the reference bins ------------------------------------------------------------------------

def naive_bin(edges: np.ndarray, value: float) -> int:
    """Prometheus' rule, spelt out: the first bucket whose upper bound is >= the value."""
    for i, upper in enumerate(edges):
        if value <= upper:
            return i
    return len(edges)


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200), st.integers(1, 20))
def test_quantile_edges_keep_training_values_inside_the_outer_bins(values: list[float], n_bins: int) -> None:
    edges = quantile_edges(values, n_bins)
    assert np.all(np.diff(edges) > 0)
    assert edges[0] < min(values) and edges[-1] == max(values)
    counts = bin_counts(edges, values)
    assert counts[0] == 0 and counts[-1] == 0 and counts.sum() == len(values)
    assert [naive_bin(edges, v) for v in values] == bin_index(edges, values).tolist()


def test_constant_feature_has_one_interior_bin() -> None:
    edges = quantile_edges([7.0] * 50)
    np.testing.assert_array_equal(edges, [np.nextafter(7.0, -np.inf), 7.0])
    np.testing.assert_array_equal(bin_counts(edges, [7.0] * 50), [0, 50, 0])
    np.testing.assert_array_equal(bin_counts(edges, [6.0, 7.0, 8.0]), [1, 1, 1])


def test_ties_on_an_edge_belong_to_the_bucket_below() -> None:
    values = [1.0] * 6 + [2.0, 3.0, 4.0, 5.0]
    edges = quantile_edges(values, 4)
    tie_bin = int(bin_index(edges, [1.0])[0])
    assert edges[tie_bin] == 1.0  # the bucket le="1.0", not the one above it
    assert bin_counts(edges, values)[tie_bin] == 6


@pytest.mark.parametrize("values", [[], [1.0, float("nan")], [float("inf")]], ids=["empty", "nan", "inf"])
def test_quantile_edges_refuse_unusable_training_values(values: list[float]) -> None:
    with pytest.raises(ValueError):
        quantile_edges(values)
