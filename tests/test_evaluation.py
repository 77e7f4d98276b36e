"""One evaluation over live counts: per-version isolation, the minimum window, unexpected failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from monitoring.decision import DriftRule
from monitoring.evaluation import SOURCE, ReferenceStore, evaluate
from monitoring.metrics import WorkerMetrics
from monitoring.settings import WorkerSettings
from monitoring.sources import PREDICTION, Histogram, WindowCounts
from monitoring.worker import DriftWorker
from tests.metrics_text import Samples, parse, series, value


def training_counts(references: ReferenceStore, version: str) -> dict[str, Histogram]:
    """The training counts themselves as the live window: no drift, 16,512 rows."""
    profile = references.get(version)
    return {name: Histogram(h.edges, h.counts.astype(float))
            for name, h in [*profile.features.items(), (PREDICTION, profile.prediction)]}


def rows_in_one_bin(references: ReferenceStore, version: str, rows: int) -> dict[str, Histogram]:
    return {name: Histogram(h.edges, np.eye(h.counts.size)[1] * rows)
            for name, h in training_counts(references, version).items()}


def samples(metrics: WorkerMetrics) -> Samples:
    return parse(generate_latest(metrics.registry).decode())


def test_a_version_without_a_bundle_does_not_hide_the_others(model_store: Path) -> None:
    references = ReferenceStore(model_store)
    good = training_counts(references, "v-test")
    ghost = {name: Histogram(h.edges, h.counts) for name, h in good.items()}
    result = evaluate(WindowCounts({"v-test": good, "v-ghost": ghost}), references, DriftRule(), 0.5, now=1.0)
    assert result.outcome == "error"
    assert set(result.errors) == {"v-ghost"} and "v-ghost" in result.errors["v-ghost"]
    assert result.versions["v-test"].sufficient
    assert result.versions["v-test"].to_dict()["drifting_features"] == []

    metrics = WorkerMetrics()
    metrics.record(result, 0.01)
    exported = samples(metrics)
    assert len(series(exported, "drift_kl_divergence", model_version="v-test")) == 8
    assert not series(exported, "drift_kl_divergence", model_version="v-ghost")
    assert value(exported, "drift_last_success_timestamp_seconds") == 0.0


def test_below_the_minimum_no_divergence_is_exported(model_store: Path) -> None:
    references = ReferenceStore(model_store)
    result = evaluate(WindowCounts({"v-test": rows_in_one_bin(references, "v-test", 150)}), references,
                      DriftRule(), 0.5, now=5.0)
    assert result.outcome == "insufficient_data"
    metrics = WorkerMetrics()
    metrics.record(result, 0.01)
    exported = samples(metrics)
    assert value(exported, "drift_window_samples", model_version="v-test") == 150
    assert not series(exported, "drift_kl_divergence") and not series(exported, "drift_prediction_psi")
    assert value(exported, "drift_last_success_timestamp_seconds") == 5.0


def test_features_and_prediction_counting_different_rows_is_an_error(model_store: Path) -> None:
    references = ReferenceStore(model_store)
    live = training_counts(references, "v-test")
    live["MedInc"] = Histogram(live["MedInc"].edges, live["MedInc"].counts * 2)
    result = evaluate(WindowCounts({"v-test": live}), references, DriftRule(), 0.5)
    assert result.outcome == "error" and "different rows" in result.errors["v-test"]


class ExplodingSource:
    """Stands for a source that throws something no one planned for."""

    name = "exploding"

    def fetch(self, now: float) -> WindowCounts:
        raise RuntimeError("boom")


def test_an_unexpected_exception_is_an_error_evaluation_not_a_dead_loop(model_store: Path) -> None:
    worker = DriftWorker(WorkerSettings(model_dir=model_store), ExplodingSource(), WorkerMetrics())
    for _ in range(3):
        result = worker.evaluate_once()
    assert result.outcome == "error" and "RuntimeError: boom" in result.errors[SOURCE]
    assert worker.consecutive_errors == 3
    assert worker.next_delay() == 120.0  # 30 s doubled twice, capped at the 120 s maximum backoff
    assert value(samples(worker.metrics), "drift_evaluations_total", outcome="error") == 3


def test_bin_proportions_are_exported_for_the_dashboard(model_store: Path) -> None:
    references = ReferenceStore(model_store)
    live = training_counts(references, "v-test")
    live["MedInc"] = Histogram(live["MedInc"].edges, np.roll(live["MedInc"].counts, 1))
    result = evaluate(WindowCounts({"v-test": live}), references, DriftRule(), 0.5)
    metrics = WorkerMetrics()
    metrics.record(result, 0.01)
    exported = samples(metrics)
    medinc = result.versions["v-test"].features["MedInc"]
    for distribution, expected in (("live", medinc.comparison.live_proportions),
                                   ("reference", medinc.comparison.reference_proportions)):
        shares = series(exported, "drift_bin_proportion", feature="MedInc", distribution=distribution)
        by_bin = [value for _, value in sorted((dict(labels)["bin"], value) for labels, value in shares.items())]
        np.testing.assert_allclose(by_bin, expected, rtol=1e-12)
        assert sum(by_bin) == pytest.approx(1.0)
    le = {dict(labels)["le"] for labels in series(exported, "drift_bin_proportion", feature="MedInc",
                                                   distribution="live")}
    assert le == {repr(float(e)) for e in medinc.edges} | {"+Inf"}
