"""The real API and the real drift worker (scrape source) as processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import simulate
from service.schemas import FEATURE_NAMES
from tests.metrics_text import scrape, series, value
from tests.processes import api_command, free_port, running, until, worker_command
from tests.reference_stats import reference_kl

WINDOW_SECONDS = 600.0  # longer than any test: nothing ages out of the window while a test runs
VERSION = "v-test"



def bin_counts_from_api(samples, feature: str) -> np.ndarray:
    buckets = series(samples, "model_feature_value_bucket", feature=feature, model_version=VERSION)
    cumulative = [v for _, v in sorted(((float(dict(l)["le"]), v) for l, v in buckets.items()))]
    return np.diff(cumulative, prepend=0.0)



class Stack:
    def __init__(self, model_store: Path, logs: Path) -> None:
        self.api_port, self.worker_port = free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.worker_url = f"http://127.0.0.1:{self.worker_port}"
        self.model_store, self.logs = model_store, logs

    def api(self):
        return running(api_command(), env={"API_MODEL_DIR": str(self.model_store), "API_PORT": str(self.api_port)},
                       log=self.logs / "api.log", ready_url=f"{self.api_url}/health/ready")

    def worker(self, scrape_url: str | None = None):
        return running(worker_command(), env={
            "DRIFT_MODEL_DIR": str(self.model_store), "DRIFT_PORT": str(self.worker_port), "DRIFT_SOURCE": "scrape",
            "DRIFT_SCRAPE_URL": scrape_url or f"{self.api_url}/metrics", "DRIFT_INTERVAL_SECONDS": "0.5",
            "DRIFT_WINDOW_SECONDS": str(WINDOW_SECONDS), "DRIFT_MAX_BACKOFF_SECONDS": "1",
        }, log=self.logs / "worker.log", ready_url=f"{self.worker_url}/health/live")

    def drift(self) -> dict:
        return httpx.get(f"{self.worker_url}/drift", timeout=5).json()

    def send(self, features: np.ndarray) -> None:
        summary = asyncio.run(simulate.replay(self.api_url, features, batch_size=100, concurrency=4))
        assert summary.ok == summary.requests, summary.errors

    def wait_for_a_scrape(self) -> None:
        """The scrape source's first snapshot is its baseline: rows sent before it are not in the window."""
        until(lambda: stack_outcome(self) == "insufficient_data", 20, "a successful scrape")

    def evaluation_with(self, samples: float, timeout: float = 20) -> dict:
        def check():
            report = self.drift()
            version = report["versions"].get(VERSION)
            return report if report["outcome"] != "error" and version and version["window_samples"] == samples \
                else None
        return until(check, timeout, f"an evaluation of {samples} rows")


def stack_outcome(stack: Stack) -> str | None:
    return stack.drift()["outcome"]


@pytest.fixture
def stack(model_store: Path, tmp_path: Path) -> Iterator[Stack]:
    yield Stack(model_store, tmp_path)


def test_normal_traffic_is_quiet_and_drifted_traffic_flags_medinc(stack: Stack, holdout_replay) -> None:
    with stack.api():
        with stack.worker():
            stack.wait_for_a_scrape()
            worker_metrics = scrape(stack.worker_url)
            assert value(worker_metrics, "drift_evaluations_total", outcome="insufficient_data") >= 1
            assert not series(worker_metrics, "drift_kl_divergence")

            stack.send(holdout_replay("normal", 1000, seed=1).features)
            normal = stack.evaluation_with(1000)["versions"][VERSION]
            assert normal["status"] == "ok" and normal["drifting_features"] == []

        with stack.worker():  # a new worker: its first scrape, after the normal rows, is its baseline
            stack.wait_for_a_scrape()
            before = scrape(stack.api_url)
            stack.send(holdout_replay("drift", 1000, seed=2).features)
            after = scrape(stack.api_url)
            drifted = stack.evaluation_with(1000)["versions"][VERSION]
            assert drifted["drifting_features"] == ["MedInc"]
            reference = stack.drift()["versions"][VERSION]["features"]
            worker_metrics = scrape(stack.worker_url)
        assert value(worker_metrics, "drift_window_samples", model_version=VERSION) == 1000
        bundle = json.loads((stack.model_store / VERSION / "bundle.json").read_text())["reference"]
        for feature in FEATURE_NAMES:
            live = bin_counts_from_api(after, feature) - bin_counts_from_api(before, feature)
            assert live.sum() == 1000
            np.testing.assert_array_equal(reference[feature]["live_counts"], live)
            expected = reference_kl(live, np.array(bundle["features"][feature]["counts"]))
            assert value(worker_metrics, "drift_kl_divergence", feature=feature, model_version=VERSION) == \
                pytest.approx(expected, abs=1e-9)


def test_api_restart_gives_no_negative_counts_and_no_false_alarm(stack: Stack, holdout_replay) -> None:
    """The restarted API serves more rows than before, so its cumulative buckets all grow: only
    its new process start time tells the restart."""
    rows = holdout_replay("normal", 1200, seed=3).features
    with stack.worker():
        with stack.api():
            stack.wait_for_a_scrape()
            stack.send(rows[:300])
            stack.evaluation_with(300)
        down = until(lambda: (r := stack.drift())["outcome"] == "error" and r, 20, "an error while the API is down")
        assert "failed" in down["errors"]["source"]
        assert not series(scrape(stack.worker_url), "drift_kl_divergence")
        with stack.api():
            stack.send(rows[300:])
            report = stack.evaluation_with(900)
        version = report["versions"][VERSION]
        assert version["drifting_features"] == []
        for feature in version["features"].values():
            assert min(feature["live_counts"]) >= 0
        worker_metrics = scrape(stack.worker_url)
        assert value(worker_metrics, "drift_evaluations_total", outcome="error") >= 1
        assert value(worker_metrics, "drift_window_samples", model_version=VERSION) == 900


def test_garbage_from_the_source_is_an_error_not_a_crash(stack: Stack) -> None:
    """The worker pointed at a JSON route instead of /metrics: logged, counted, series removed."""
    with stack.api(), stack.worker(scrape_url=f"{stack.api_url}/model") as worker:
        report = until(lambda: (r := stack.drift())["outcome"] == "error" and r, 20, "an error evaluation")
        assert report["versions"] == {}
        worker_metrics = scrape(stack.worker_url)
        assert value(worker_metrics, "drift_evaluations_total", outcome="error") >= 1
        assert value(worker_metrics, "drift_evaluations_total", outcome="ok") == 0
        assert not series(worker_metrics, "drift_window_samples")
        assert worker.poll() is None
    assert "drift evaluation failed" in (stack.logs / "worker.log").read_text()
