"""The worker's sources: cumulative buckets to per-bin counts, and failures as SourceError."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.sources import PREDICTION, PrometheusSource, ScrapeSource, SourceError, histogram_from_cumulative
from tests.processes import free_port
from tests.test_api import VALID


def test_cumulative_buckets_become_per_bin_counts() -> None:
    histogram = histogram_from_cumulative({2.0: 3.0, 1.0: 1.0, math.inf: 10.0, 5.0: 3.0})
    np.testing.assert_array_equal(histogram.edges, [1.0, 2.0, 5.0])
    np.testing.assert_array_equal(histogram.counts, [1.0, 2.0, 0.0, 7.0])


def test_an_extrapolation_dip_is_no_negative_count() -> None:
    histogram = histogram_from_cumulative({1.0: 5.0000001, 2.0: 5.0, math.inf: 6.0})
    assert histogram.counts.min() == 0.0
    assert histogram.counts.sum() == pytest.approx(6.0000001)


@pytest.mark.parametrize("buckets", [{1.0: 1.0}, {}, {1.0: -1.0, math.inf: 2.0}, {1.0: math.nan, math.inf: 2.0}],
                         ids=["no-inf", "empty", "negative", "nan"])
def test_unusable_buckets_are_refused(buckets: dict[float, float]) -> None:
    with pytest.raises(SourceError):
        histogram_from_cumulative(buckets)


def test_scrape_source_counts_the_window_of_a_real_api(api_url: str) -> None:
    import httpx

    source = ScrapeSource(f"{api_url}/metrics", window_seconds=60, timeout=5)
    baseline = source.fetch(now=1000.0).versions["v-test"]
    for _ in range(3):
        assert httpx.post(f"{api_url}/predict", json=VALID).status_code == 200
    window = source.fetch(now=1010.0).versions["v-test"]
    assert window[PREDICTION].counts.sum() == 3
    assert window["MedInc"].counts.sum() == 3
    np.testing.assert_array_equal(window["MedInc"].edges, baseline["MedInc"].edges)
    later = source.fetch(now=1080.0).versions["v-test"]  # the baseline at 1010 is now the window start
    assert later[PREDICTION].counts.sum() == 0


@pytest.mark.parametrize("kind", ["prometheus", "scrape"])
def test_an_unreachable_source_raises_source_error(kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    source = PrometheusSource(url, 900, 2) if kind == "prometheus" else ScrapeSource(url + "/metrics", 900, 2)
    with pytest.raises(SourceError, match="failed"):
        source.fetch(now=0.0)


def test_prometheus_source_refuses_an_answer_that_is_not_prometheus(api_url: str) -> None:
    """The API is no Prometheus: /api/v1/query is a 404 there."""
    with pytest.raises(SourceError):
        PrometheusSource(api_url, 900, 5).fetch(now=0.0)
