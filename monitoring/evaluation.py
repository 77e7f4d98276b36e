"""One evaluation: every served version's live window against that version's reference profile."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from monitoring.decision import DriftRule
from monitoring.divergence import BinComparison, compare_counts
from monitoring.profile import HistogramProfile, ReferenceProfile
from monitoring.sources import PREDICTION, PREDICTION_FAMILY, Histogram, SourceError, WindowCounts
from service import bundle

Outcome = Literal["ok", "insufficient_data", "error"]


class ReferenceStore:
    """Reference profiles read from the model store, one per model version, cached."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._profiles: dict[str, ReferenceProfile] = {}

    def get(self, version: str) -> ReferenceProfile:
        if version not in self._profiles:
            metadata = bundle.read_metadata(self.model_dir, version)
            try:
                self._profiles[version] = ReferenceProfile.from_dict(metadata["reference"])
            except (KeyError, TypeError, ValueError) as exc:
                raise bundle.BundleError(f"bundle {version} has no valid reference profile: {exc!r}") from exc
        return self._profiles[version]


@dataclass(frozen=True)
class SeriesDrift:
    comparison: BinComparison
    edges: np.ndarray
    live_counts: np.ndarray
    drifting: bool
    severity: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.comparison.to_dict(), "drifting": self.drifting, "severity": self.severity,
                "edges": self.edges.tolist(), "live_counts": self.live_counts.tolist()}


@dataclass(frozen=True)
class VersionDrift:
    """``features`` and ``prediction`` are empty/None when the window has too few rows."""

    model_version: str
    window_samples: float
    features: dict[str, SeriesDrift] = field(default_factory=dict)
    prediction: SeriesDrift | None = None

    @property
    def sufficient(self) -> bool:
        return self.prediction is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_samples": self.window_samples,
            "status": "ok" if self.sufficient else "insufficient_data",
            "drifting_features": sorted(name for name, f in self.features.items() if f.drifting),
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }


@dataclass(frozen=True)
class Evaluation:
    """``versions`` holds the versions evaluated; ``errors`` why others could not be (the
    outcome is then ``error``, and the versions that could still export their series)."""

    evaluated_at: float
    outcome: Outcome
    versions: dict[str, VersionDrift]
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"evaluated_at": self.evaluated_at, "outcome": self.outcome, "errors": self.errors,
                "versions": {v: d.to_dict() for v, d in self.versions.items()}}


SOURCE = "source"  # the key in Evaluation.errors when nothing could be evaluated


def _compare(live: Histogram, reference: HistogramProfile, rule: DriftRule, smoothing: float) -> SeriesDrift:
    if live.edges.shape != reference.edges.shape or not np.array_equal(live.edges, reference.edges):
        raise SourceError("live bucket bounds differ from the reference bin edges")
    comparison = compare_counts(live.counts, reference.counts, smoothing)
    return SeriesDrift(comparison, reference.edges, live.counts, rule.is_drifting(comparison),
                       rule.severity(comparison))


def evaluate_version(version: str, live: dict[str, Histogram], references: ReferenceStore,
                     rule: DriftRule, smoothing: float) -> VersionDrift:
    """Below ``rule.min_samples`` rows nothing is compared (so a retired version whose bundle
    is gone costs nothing); otherwise every feature and the prediction are."""
    if PREDICTION not in live:
        raise SourceError(f"version {version}: no {PREDICTION_FAMILY} series")
    samples = float(live[PREDICTION].counts.sum())
    totals = np.array([h.counts.sum() for h in live.values()])
    if not np.allclose(totals, samples, rtol=1e-6, atol=1e-6):
        raise SourceError(f"version {version}: the features and the prediction count different rows")
    if samples < rule.min_samples:
        return VersionDrift(version, samples)
    reference = references.get(version)
    if set(live) - {PREDICTION} != set(reference.features):
        raise SourceError(f"version {version}: the live series do not match the reference features")
    features = {name: _compare(live[name], profile, rule, smoothing) for name, profile in reference.features.items()}
    return VersionDrift(version, samples, features, _compare(live[PREDICTION], reference.prediction, rule, smoothing))


def evaluate(window: WindowCounts, references: ReferenceStore, rule: DriftRule, smoothing: float,
             now: float | None = None) -> Evaluation:
    """Evaluate every version in ``window``. A version whose data or bundle is unusable is
    reported in ``errors`` and does not keep the others from being evaluated."""
    versions: dict[str, VersionDrift] = {}
    errors: dict[str, str] = {}
    for version, live in window.versions.items():
        try:
            versions[version] = evaluate_version(version, live, references, rule, smoothing)
        except (SourceError, bundle.BundleError, ValueError) as exc:
            errors[version] = str(exc)
    if errors:
        outcome: Outcome = "error"
    else:
        outcome = "ok" if any(v.sufficient for v in versions.values()) else "insufficient_data"
    return Evaluation(time.time() if now is None else now, outcome, versions, errors)
