"""A real Prometheus server scraping two real API replicas and the real drift worker.

Prometheus runs the shipped ``prometheus.yml`` and ``alerts.yml``, copied with only the targets
rewritten to this test's loopback ports, a 1 s scrape interval and 2 s ``for:`` durations.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

import simulate
from monitoring.prometheus_config import write_local_config
from service.schemas import FEATURE_NAMES
from tests.dashboards import dashboard_queries, metric_names, render
from tests.metrics_text import scrape
from tests.processes import api_command, free_port, running, until, worker_command
from tests.reference_stats import reference_kl

pytestmark = pytest.mark.integration

SCRAPE_SECONDS = 1.0
WINDOW_SECONDS = 600
VERSION = "v-test"
DRIFT_ALERTS = {"FeatureDrift", "FeatureDriftSevere", "PredictionDrift"}



@dataclass
class LiveStack:
    prometheus_url: str
    worker_url: str
    api_urls: list[str]
    both_scraped_at: float = 0.0
    sent: list[list[np.ndarray]] = field(default_factory=lambda: [[], []])

    def query(self, promql: str) -> list[dict]:
        body = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def alerts(self) -> list[dict]:
        return httpx.get(f"{self.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def rules_evaluated_after(self, moment: float) -> None:
        """Wait until Prometheus evaluated the drift rules on data scraped after ``moment``."""
        def evaluated() -> bool:
            groups = httpx.get(f"{self.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
            last = next(g["lastEvaluation"] for g in groups if g["name"] == "drift")
            return datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp() > moment + SCRAPE_SECONDS
        until(evaluated, 30, "an evaluation of the drift rules")

    def drift(self) -> dict:
        return httpx.get(f"{self.worker_url}/drift", timeout=10).json()

    def send_halves(self, features: np.ndarray) -> None:
        """The first half of the rows to one replica, the second half to the other."""
        half = len(features) // 2
        for i, (url, rows) in enumerate(zip(self.api_urls, (features[:half], features[half:]))):
            summary = asyncio.run(simulate.replay(url, rows, batch_size=100, concurrency=4))
            assert summary.ok == summary.requests, summary.errors
            self.sent[i].append(rows)

    def union(self) -> np.ndarray:
        return np.concatenate([rows for replica in self.sent for rows in replica])

    def settled_evaluation(self, rows: int) -> dict:
        """A worker evaluation made after Prometheus scraped every row sent so far."""
        def scraped() -> bool:
            result = self.query(f'sum(model_predictions_total{{model_version="{VERSION}"}})')
            return bool(result) and float(result[0]["value"][1]) == rows
        until(scraped, 30, f"Prometheus to scrape {rows} predictions")
        after = time.time()
        return until(lambda: (d := self.drift())["outcome"] == "ok" and d["evaluated_at"] > after + SCRAPE_SECONDS
                     and d, 30, "a worker evaluation of the scraped rows")


@pytest.fixture(scope="module")
def live(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is not on PATH: apt-get install prometheus (see .ci/run)")
    work = tmp_path_factory.mktemp("live")
    api_ports, worker_port, prometheus_port = [free_port(), free_port()], free_port(), free_port()
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    config = write_local_config(work / "prometheus", {
        "api": [f"127.0.0.1:{p}" for p in api_ports],
        "drift-worker": [f"127.0.0.1:{worker_port}"],
        "prometheus": [f"127.0.0.1:{prometheus_port}"],
    }, scrape_interval=f"{SCRAPE_SECONDS:g}s", alert_for="2s")
    apis = [running(api_command(), env={"API_MODEL_DIR": str(model_store), "API_PORT": str(port)},
                    log=work / f"api-{port}.log", ready_url=f"http://127.0.0.1:{port}/health/ready")
            for port in api_ports]
    worker = running(worker_command(), env={
        "DRIFT_MODEL_DIR": str(model_store), "DRIFT_PORT": str(worker_port), "DRIFT_SOURCE": "prometheus",
        "DRIFT_PROMETHEUS_URL": prometheus_url, "DRIFT_INTERVAL_SECONDS": "1",
        "DRIFT_WINDOW_SECONDS": str(WINDOW_SECONDS), "DRIFT_MAX_BACKOFF_SECONDS": "2",
    }, log=work / "worker.log", ready_url=f"http://127.0.0.1:{worker_port}/health/live")
    prometheus = running([binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                         env={}, log=work / "prometheus.log", ready_url=f"{prometheus_url}/-/ready")
    with apis[0], apis[1], worker, prometheus:
        stack = LiveStack(prometheus_url, f"http://127.0.0.1:{worker_port}",
                          [f"http://127.0.0.1:{p}" for p in api_ports])
        until(lambda: len(stack.query('up{job="api"} == 1')) == 2, 30, "both API replicas scraped")
        stack.both_scraped_at = time.time()
        yield stack


def test_every_target_is_up(live: LiveStack) -> None:
    def all_up() -> dict[str, int] | None:
        targets = httpx.get(f"{live.prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        healthy = [t for t in targets if t["health"] == "up"]
        jobs: dict[str, int] = {}
        for target in healthy:
            jobs[target["labels"]["job"]] = jobs.get(target["labels"]["job"], 0) + 1
        return jobs if len(healthy) == len(targets) == 4 else None
    assert until(all_up, 30, "every target up") == {"api": 2, "drift-worker": 1, "prometheus": 1}


def increase_bounds_kl(per_replica: list[np.ndarray], reference: np.ndarray, max_factor: float) -> tuple[float, float]:
    """The range of KL that ``increase()`` can produce for these true per-replica bin counts.

    Every bucket series of a replica is born at zero (the API exposes them when the model
    loads) and lies wholly inside the window, so ``increase()`` does not extrapolate towards
    the window start; towards its end it scales the replica's counts by ``1 + d / T``, with
    ``d`` at most 1.1 scrape intervals and ``T`` the time the replica has been scraped. Each
    replica has its own factor, which shifts the weights of the two halves; the KL of the
    union is evaluated over a grid of both factors.
    """
    values = []
    for f1 in np.linspace(1.0, max_factor, 9):
        for f2 in np.linspace(1.0, max_factor, 9):
            live_counts = f1 * per_replica[0] + f2 * per_replica[1]
            values.append(reference_kl(live_counts, reference))
    return min(values), max(values)



def test_normal_traffic_split_over_two_replicas(live: LiveStack, model_store: Path, holdout_replay) -> None:
    live.send_halves(holdout_replay("normal", 1200, seed=11).features)
    evaluation = live.settled_evaluation(1200)
    version = evaluation["versions"][VERSION]
    assert version["drifting_features"] == []

    reference = json.loads((model_store / VERSION / "bundle.json").read_text())["reference"]["features"]
    elapsed = evaluation["evaluated_at"] - live.both_scraped_at
    max_factor = 1 + 1.1 * SCRAPE_SECONDS / max(elapsed - SCRAPE_SECONDS, SCRAPE_SECONDS)
    for j, feature in enumerate(FEATURE_NAMES):
        edges = np.array(reference[feature]["edges"])
        per_replica = [np.bincount(np.searchsorted(edges, np.concatenate(rows)[:, j], side="left"),
                                   minlength=edges.size + 1) for rows in live.sent]
        low, high = increase_bounds_kl(per_replica, np.array(reference[feature]["counts"]), max_factor)
        union = reference_kl(per_replica[0] + per_replica[1], np.array(reference[feature]["counts"]))
        assert low - 1e-12 <= version["features"][feature]["kl"] <= high + 1e-12, (feature, union, low, high)
        assert low - 1e-12 <= union <= high + 1e-12

    live.rules_evaluated_after(evaluation["evaluated_at"] + SCRAPE_SECONDS)
    assert not [a for a in live.alerts() if a["labels"]["alertname"] in DRIFT_ALERTS]


def test_drifted_traffic_fires_the_medinc_alert(live: LiveStack, holdout_replay) -> None:
    live.send_halves(holdout_replay("drift", 4000, seed=12).features)

    def medinc_firing() -> list[dict]:
        return [a for a in live.alerts() if a["labels"]["alertname"] == "FeatureDrift"
                and a["labels"].get("feature") == "MedInc" and a["state"] == "firing"]
    firing = until(medinc_firing, 60, "FeatureDrift for MedInc to fire")
    assert firing[0]["labels"]["model_version"] == VERSION
    assert firing[0]["labels"]["severity"] == "warning"
    others = {a["labels"].get("feature") for a in live.alerts() if a["labels"]["alertname"] == "FeatureDrift"}
    assert "Latitude" not in others


def test_every_dashboard_query_returns_data(live: LiveStack) -> None:
    """After normal and drifted traffic (the tests above), with real template values."""
    instances = sorted(t["labels"]["instance"] for t in
                       httpx.get(f"{live.prometheus_url}/api/v1/targets").json()["data"]["activeTargets"]
                       if t["labels"]["job"] == "api")
    values = {"__rate_interval": "1m", "__interval": "1s", "__range": "10m", "instance": instances[0],
              "model_version": VERSION, "feature": "MedInc"}
    empty = []
    for uid, title, expr in dashboard_queries():
        if not live.query(render(expr, values)):
            empty.append((uid, title))
    assert empty == []  # including the panels that are empty on a healthy stack: drift is firing now


def test_every_dashboard_metric_is_exported(live: LiveStack) -> None:
    exported = {name for url in [*live.api_urls, live.worker_url]
                for name, _ in scrape(url)}
    families = exported | {n.rsplit("_", 1)[0] for n in exported if n.endswith(("_bucket", "_count", "_sum"))}
    missing = {name for _, _, expr in dashboard_queries() for name in metric_names(expr)} - families
    assert missing == set()
