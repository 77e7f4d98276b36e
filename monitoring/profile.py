"""Reference profile: quantile bins with open-ended outer bins.

Bin membership follows Prometheus' histogram rule everywhere: a value ``v`` belongs to the
first bucket whose upper bound ``le`` is >= ``v``. With ``edges`` sorted ascending, the bins are

    (-inf, e0], (e0, e1], ..., (e_{m-2}, e_{m-1}], (e_{m-1}, +inf)

so there are ``len(edges) + 1`` bins; the first and the last are the open-ended outer bins.
``e0`` is the largest float below the training minimum, so the lower outer bin holds only
values below anything seen in training, and ``e_{m-1}`` is the training maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_QUANTILE_BINS = 10


def quantile_edges(values: ArrayLike, n_bins: int = DEFAULT_QUANTILE_BINS) -> np.ndarray:
    """Bucket upper bounds at the training quantiles, deduplicated, plus the two range edges."""
    v = np.asarray(values, dtype=float)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("reference values must be a non-empty array of finite numbers")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    lowest, highest = float(v.min()), float(v.max())
    interior = np.quantile(v, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return np.unique(np.concatenate([[np.nextafter(lowest, -np.inf)], interior, [highest]]))


def bin_index(edges: np.ndarray, values: ArrayLike) -> np.ndarray:
    """Index of the bin each value falls in, 0 .. len(edges) (Prometheus' ``le`` rule)."""
    return np.searchsorted(edges, values, side="left")


def bin_counts(edges: np.ndarray, values: ArrayLike) -> np.ndarray:
    """Counts per bin, ``len(edges) + 1`` of them, outer bins included."""
    return np.bincount(bin_index(edges, values), minlength=len(edges) + 1)


@dataclass(frozen=True)
class HistogramProfile:
    """Bin edges and the training counts per bin (``len(edges) + 1`` counts)."""

    edges: np.ndarray
    counts: np.ndarray

    def __post_init__(self) -> None:
        if (self.edges.ndim != 1 or self.edges.size == 0 or not np.all(np.isfinite(self.edges))
                or not np.all(np.diff(self.edges) > 0)):
            raise ValueError("edges must be a non-empty, strictly increasing sequence of finite numbers")
        if self.counts.shape != (self.edges.size + 1,) or np.any(self.counts < 0) or self.counts.sum() <= 0:
            raise ValueError("counts must hold one non-negative count per bin (len(edges) + 1), not all zero")

    @classmethod
    def from_values(cls, values: ArrayLike, n_bins: int = DEFAULT_QUANTILE_BINS) -> HistogramProfile:
        edges = quantile_edges(values, n_bins)
        return cls(edges=edges, counts=bin_counts(edges, values))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistogramProfile:
        """Raises ValueError for anything that is not a valid profile (bundle.json is not signed)."""
        try:
            return cls(edges=np.asarray(data["edges"], dtype=float), counts=np.asarray(data["counts"], dtype=np.int64))
        except (KeyError, TypeError, OverflowError) as exc:
            raise ValueError(f"not a histogram profile: {exc!r}") from exc

    def to_dict(self) -> dict[str, list]:
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist()}


@dataclass(frozen=True)
class ReferenceProfile:
    """The training distribution of every feature and of the model's prediction."""

    features: dict[str, HistogramProfile]
    prediction: HistogramProfile

    @classmethod
    def from_training(
        cls,
        feature_names: list[str],
        features: np.ndarray,
        predictions: np.ndarray,
        n_bins: int = DEFAULT_QUANTILE_BINS,
    ) -> ReferenceProfile:
        return cls(
            features={
                name: HistogramProfile.from_values(features[:, j], n_bins)
                for j, name in enumerate(feature_names)
            },
            prediction=HistogramProfile.from_values(predictions, n_bins),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """Raises ValueError for anything that is not a valid reference profile."""
        try:
            features, prediction = data["features"], data["prediction"]
            items = features.items()
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a reference profile: {exc!r}") from exc
        return cls(features={str(name): HistogramProfile.from_dict(h) for name, h in items},
                   prediction=HistogramProfile.from_dict(prediction))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": {name: h.to_dict() for name, h in self.features.items()},
            "prediction": self.prediction.to_dict(),
        }
