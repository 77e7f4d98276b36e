"""Prometheus metrics of the API, in one registry per app.

``model_feature_value`` and ``model_prediction_value`` need one bucket list per feature (the
feature's reference bin edges), which ``prometheus_client.Histogram`` cannot do, so a custom
collector keeps the counts in numpy arrays and updates them vectorised per request or batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from monitoring.profile import ReferenceProfile, bin_index

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

REJECTION_REASONS = (
    "empty_body",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "non_finite",
    "batch_size",
    "body_too_large",
    "unsupported_media_type",
    "body_timeout",
    "client_disconnected",
)


class _BinnedHistograms:
    """Cumulative bucket counts for several series that each have their own bucket bounds."""

    def __init__(self, edges: list[np.ndarray]) -> None:
        self.edges = edges
        self.counts = [np.zeros(e.size + 1, dtype=np.int64) for e in edges]
        self.sums = np.zeros(len(edges))

    def observe(self, columns: np.ndarray) -> None:
        """``columns`` has one column per series and one row per observation."""
        for j, edges in enumerate(self.edges):
            self.counts[j] += np.bincount(bin_index(edges, columns[:, j]), minlength=edges.size + 1)
        with np.errstate(over="ignore", invalid="ignore"):  # finite inputs near 1e308 can overflow the sum
            self.sums += columns.sum(axis=0)

    def add_samples(self, metric: Metric, j: int, labels: dict[str, str]) -> None:
        """Buckets, ``_count`` and ``_sum`` of series ``j``.

        Written sample by sample because ``HistogramMetricFamily`` leaves out ``_count`` and
        ``_sum`` when a bucket bound is negative (Longitude), and the text format allows them.
        """
        cumulative = np.cumsum(self.counts[j]).tolist()
        for bound, count in zip([repr(float(e)) for e in self.edges[j]] + ["+Inf"], cumulative):
            metric.add_sample(metric.name + "_bucket", {**labels, "le": bound}, count)
        metric.add_sample(metric.name + "_count", labels, cumulative[-1])
        metric.add_sample(metric.name + "_sum", labels, float(self.sums[j]))


class ReferenceHistogramCollector(Collector):
    """``model_feature_value`` and ``model_prediction_value`` for every model version loaded.

    Every bucket series exists at zero as soon as a version is registered, so that
    ``increase()`` over Prometheus' samples sees the very first requests.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._features: dict[str, tuple[list[str], _BinnedHistograms]] = {}
        self._predictions: dict[str, _BinnedHistograms] = {}

    def register_version(self, version: str, feature_names: Iterable[str], profile: ReferenceProfile) -> None:
        names = list(feature_names)
        with self._lock:
            if version in self._features:
                return
            self._features[version] = (names, _BinnedHistograms([profile.features[n].edges for n in names]))
            self._predictions[version] = _BinnedHistograms([profile.prediction.edges])

    def observe(self, version: str, features: np.ndarray, predictions: np.ndarray) -> None:
        with self._lock:
            self._features[version][1].observe(features)
            self._predictions[version].observe(predictions.reshape(-1, 1))

    def collect(self) -> Iterator[Metric]:
        features = Metric("model_feature_value", "Served feature values; bucket bounds are the reference bin edges",
                          "histogram")
        prediction = Metric("model_prediction_value", "Served predictions; bucket bounds are the reference bin edges",
                            "histogram")
        with self._lock:
            for version, (names, hist) in self._features.items():
                for j, name in enumerate(names):
                    hist.add_samples(features, j, {"feature": name, "model_version": version})
            for version, hist in self._predictions.items():
                hist.add_samples(prediction, 0, {"model_version": version})
        yield features
        yield prediction


class ServiceMetrics:
    """Every metric family of the API, registered in ``self.registry``."""

    def __init__(self, routes: Iterable[tuple[str, str]], rejection_statuses: dict[str, Iterable[int]]) -> None:
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered", ["handler", "method", "status"], registry=self.registry)
        self.request_duration = Histogram(
            "http_request_duration_seconds", "Time to answer an HTTP request", ["handler", "method"],
            buckets=REQUEST_BUCKETS, registry=self.registry)
        self.in_progress = Gauge(
            "http_requests_in_progress", "HTTP requests being answered", ["handler"], registry=self.registry)
        self.predictions = Counter(
            "model_predictions_total", "Rows predicted", ["model_version"], registry=self.registry)
        self.inference_duration = Histogram(
            "model_inference_duration_seconds", "Duration of one model call (a request or a batch)",
            buckets=INFERENCE_BUCKETS, registry=self.registry)
        self.rejected = Counter(
            "model_input_rejected_total", "Requests refused before reaching the model", ["reason"],
            registry=self.registry)
        self.info = Gauge(
            "model_info", "The served model (value 1)",
            ["model_version", "model_type", "sklearn_version", "python_version"], registry=self.registry)
        self.histograms = ReferenceHistogramCollector()
        self.registry.register(self.histograms)
        ProcessCollector(registry=self.registry)  # process_start_time_seconds tells a restart
        self._precreate(routes, rejection_statuses)

    def _precreate(self, routes: Iterable[tuple[str, str]], rejection_statuses: dict[str, Iterable[int]]) -> None:
        """Create the label sets in use at zero, so the first error shows up in ``rate()``."""
        for handler, method in routes:
            self.request_duration.labels(handler, method)
            self.in_progress.labels(handler)
            for status in sorted({200, 500, *rejection_statuses.get(handler, ())}):
                self.requests.labels(handler, method, str(status))
        for method in ("GET", "POST"):
            self.requests.labels("none", method, "404")
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)

    def model_loaded(self, version: str, metadata: dict, profile: ReferenceProfile) -> None:
        info = [version, *(str(value) for value in (
            metadata["model"]["type"], metadata["versions"]["sklearn"], metadata["versions"]["python"]))]
        self.histograms.register_version(version, metadata["features"], profile)
        self.predictions.labels(version)
        self.info.clear()
        self.info.labels(*info).set(1)

    def observe_prediction(self, version: str, features: np.ndarray, predictions: np.ndarray, seconds: float) -> None:
        self.inference_duration.observe(seconds)
        self.predictions.labels(version).inc(predictions.size)
        self.histograms.observe(version, features, predictions)
