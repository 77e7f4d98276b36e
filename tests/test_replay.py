"""Done-when of the serving issue: 1,000 held-out rows replayed through the real API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import r2_score

import simulate
from service.schemas import FEATURE_NAMES
from tests.metrics_text import scrape, series, value

ROWS = 1000


def test_replay_of_held_out_rows(api_url: str, model_store: Path, housing) -> None:
    plan = simulate.build_replay(housing, "normal", ROWS, seed=7)
    before = scrape(api_url)
    summary = asyncio.run(simulate.replay(api_url, plan.features, concurrency=8))
    after = scrape(api_url)

    assert summary.ok == ROWS and summary.errors == {}
    model = joblib.load(model_store / "v-test" / "model.joblib")
    offline_r2 = r2_score(plan.target, model.predict(plan.features))
    served_r2 = r2_score(plan.target, summary.predictions)
    assert abs(served_r2 - offline_r2) <= 1e-9
    assert served_r2 >= 0.80

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("model_predictions_total", model_version="v-test") == ROWS
    assert delta("http_request_duration_seconds_count", handler="/predict", method="POST") == ROWS
    assert delta("http_requests_total", handler="/predict", method="POST", status="200") == ROWS
    reference = json.loads((model_store / "v-test" / "bundle.json").read_text())["reference"]
    for j, feature in enumerate(FEATURE_NAMES):
        assert delta("model_feature_value_count", feature=feature, model_version="v-test") == ROWS
        assert np.isclose(delta("model_feature_value_sum", feature=feature, model_version="v-test"),
                          plan.features[:, j].sum(), rtol=1e-9)
        buckets = series(after, "model_feature_value_bucket", feature=feature, model_version="v-test")
        bounds = sorted(float(dict(labels)["le"]) for labels in buckets)
        assert bounds[:-1] == reference["features"][feature]["edges"]
        assert bounds[-1] == float("inf")
    prediction_buckets = series(after, "model_prediction_value_bucket", model_version="v-test")
    assert sorted(float(dict(l)["le"]) for l in prediction_buckets)[:-1] == reference["prediction"]["edges"]
    assert delta("model_prediction_value_count", model_version="v-test") == ROWS


def test_more_rows_than_given_cycle_through_them(api_url: str, holdout_replay) -> None:
    plan = holdout_replay("normal", 10)
    summary = asyncio.run(simulate.replay(api_url, plan.features, rows=25, batch_size=4, concurrency=3))
    assert (summary.rows_sent, summary.requests, summary.ok) == (25, 7, 7)
    assert not np.isnan(summary.predictions).any()


def test_rate_and_duration_cap_the_rows_sent(api_url: str, holdout_replay) -> None:
    plan = holdout_replay("normal", 10)
    summary = asyncio.run(simulate.replay(api_url, plan.features, rate=40.0, duration=1.5, concurrency=4))
    assert 0 < summary.rows_sent <= 61  # rows are scheduled at 1/40 s apart and none after 1.5 s
    assert summary.ok == summary.requests


def test_scenarios_shift_only_what_they_say(holdout_replay) -> None:
    normal, drift = holdout_replay("normal", 500, seed=4), holdout_replay("drift", 500, seed=4)
    medinc = FEATURE_NAMES.index("MedInc")
    np.testing.assert_allclose(drift.features[:, medinc], normal.features[:, medinc] * 1.25)
    others = [j for j in range(len(FEATURE_NAMES)) if j != medinc]
    np.testing.assert_array_equal(drift.features[:, others], normal.features[:, others])
    out = holdout_replay("out-of-range", 500, seed=4)
    maximum = normal.features.max(axis=0)
    assert (out.features[:, medinc] > 15.0001).all()  # the data set caps MedInc at 15.0001
    assert (out.features[:, FEATURE_NAMES.index("HouseAge")] > 52).all()
    assert maximum[medinc] <= 15.0001
