"""The worker's Prometheus metrics. The divergence gauges are rendered from the latest
evaluation by a collector, so a version with too few rows, or an evaluation that failed,
has no series at all rather than a stale or zero one."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring.evaluation import Evaluation, SeriesDrift

OUTCOMES = ("ok", "insufficient_data", "error")
FEATURE_GAUGES = {
    "drift_kl_divergence": ("kl", "KL(live || reference) per feature, natural log, smoothed counts"),
    "drift_psi": ("psi", "Population stability index per feature"),
    "drift_p_value": ("p_value", "G-test p-value of the live counts against the reference proportions"),
    "drift_out_of_range_ratio": ("out_of_range_ratio", "Share of live values in the two open-ended outer bins"),
}
PREDICTION_GAUGES = {
    "drift_prediction_kl_divergence": ("kl", "KL(live || reference) of the model's predictions"),
    "drift_prediction_psi": ("psi", "Population stability index of the model's predictions"),
    "drift_prediction_p_value": ("p_value", "G-test p-value of the model's predictions"),
}


def _add_bin_proportions(family: GaugeMetricFamily, feature: str, version: str, series: SeriesDrift) -> None:
    """One sample per bin and distribution; ``bin`` (zero-padded) orders the bins, ``le`` names them."""
    bounds = [repr(float(e)) for e in series.edges] + ["+Inf"]
    for distribution, shares in (("live", series.comparison.live_proportions),
                                 ("reference", series.comparison.reference_proportions)):
        for i, (le, share) in enumerate(zip(bounds, shares)):
            family.add_metric([feature, version, f"{i:02d}", le, distribution], float(share))


class DriftCollector(Collector):
    def __init__(self) -> None:
        self.latest: Evaluation | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        versions = self.latest.versions.values() if self.latest else []
        samples = GaugeMetricFamily("drift_window_samples", "Live rows in the evaluated window",
                                    labels=["model_version"])
        features = {name: GaugeMetricFamily(name, doc, labels=["feature", "model_version"])
                    for name, (_, doc) in FEATURE_GAUGES.items()}
        predictions = {name: GaugeMetricFamily(name, doc, labels=["model_version"])
                       for name, (_, doc) in PREDICTION_GAUGES.items()}
        bins = GaugeMetricFamily(
            "drift_bin_proportion", "Smoothed share of each reference bin, live and in training (per feature)",
            labels=["feature", "model_version", "bin", "le", "distribution"])
        for drift in versions:
            samples.add_metric([drift.model_version], drift.window_samples)
            for feature, series in drift.features.items():
                for name, (field, _) in FEATURE_GAUGES.items():
                    features[name].add_metric([feature, drift.model_version], getattr(series.comparison, field))
                _add_bin_proportions(bins, feature, drift.model_version, series)
            if drift.prediction is not None:
                for name, (field, _) in PREDICTION_GAUGES.items():
                    predictions[name].add_metric([drift.model_version], getattr(drift.prediction.comparison, field))
        yield samples
        yield bins
        yield from features.values()
        yield from predictions.values()


class WorkerMetrics:
    def __init__(self) -> None:
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.drift = DriftCollector()
        self.registry.register(self.drift)
        self.last_success = Gauge("drift_last_success_timestamp_seconds",
                                  "Unix time of the last complete evaluation", registry=self.registry)
        self.evaluations = Counter("drift_evaluations_total", "Evaluations run, by outcome", ["outcome"],
                                   registry=self.registry)
        self.duration = Histogram("drift_evaluation_duration_seconds", "Time one evaluation took",
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                  registry=self.registry)
        for outcome in OUTCOMES:
            self.evaluations.labels(outcome)

    def record(self, evaluation: Evaluation, seconds: float) -> None:
        self.drift.latest = evaluation
        self.evaluations.labels(evaluation.outcome).inc()
        self.duration.observe(seconds)
        if evaluation.outcome != "error":
            self.last_success.set(evaluation.evaluated_at)
