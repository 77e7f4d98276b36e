"""The served model: load the CURRENT bundle, verify it, warm it up, predict, and hot-reload
when CURRENT names another version. A bundle that fails verification is never served."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn

from monitoring.profile import ReferenceProfile
from service import bundle
from service.metrics import ServiceMetrics
from service.schemas import FEATURE_NAMES
from service.settings import Settings

log = logging.getLogger(__name__)


class ModelNotReady(Exception):
    """No verified model is loaded."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: Any
    metadata: dict[str, Any]
    profile: ReferenceProfile


@dataclass(frozen=True)
class Prediction:
    version: str
    values: np.ndarray


def _warm_up(model: Any, profile: ReferenceProfile) -> None:
    """One prediction on a typical row (the median edge of each feature) before reporting ready."""
    row = np.array([[profile.features[name].edges[profile.features[name].edges.size // 2] for name in FEATURE_NAMES]])
    output = np.asarray(model.predict(row), dtype=float)
    if output.shape != (1,) or not np.all(np.isfinite(output)):
        raise bundle.BundleError(f"warm-up prediction returned {output!r}")


def _load(settings: Settings, version: str) -> LoadedModel:
    model, metadata = bundle.load_model(
        settings.model_dir, version, allow_sklearn_mismatch=settings.allow_sklearn_mismatch)
    if metadata["versions"]["sklearn"] != sklearn.__version__:
        log.warning("serving a bundle trained with another scikit-learn version (override set)",
                    extra={"model_version": version, "trained_with": metadata["versions"]["sklearn"],
                           "installed": sklearn.__version__})
    try:
        if tuple(metadata["features"]) != FEATURE_NAMES:
            raise bundle.BundleError(f"bundle features {metadata['features']} differ from the API's {FEATURE_NAMES}")
        profile = ReferenceProfile.from_dict(metadata["reference"])
        if set(profile.features) != set(FEATURE_NAMES):
            raise ValueError(f"profiles for {sorted(profile.features)}, not for {sorted(FEATURE_NAMES)}")
        for key in ("model", "versions"):
            if not isinstance(metadata.get(key), dict):
                raise ValueError(f"no {key!r} section")
    except (KeyError, TypeError, ValueError) as exc:
        raise bundle.BundleError(f"bundle {version} is invalid: {exc}") from exc
    try:
        _warm_up(model, profile)
    except bundle.BundleError:
        raise
    except Exception as exc:  # whatever the unpickled object does when asked to predict
        raise bundle.BundleError(f"bundle {version} failed its warm-up prediction: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(version, model, metadata, profile)


class ModelStore:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._current: LoadedModel | None = None
        self._last_failure: tuple[str, str] | None = None
        self.error: str | None = "no model loaded yet"

    def refresh(self) -> None:
        """Load the version CURRENT names if it is not the one served. Never raises: a failure
        keeps serving the previous model (or none) and is logged once per version and reason."""
        try:
            version = bundle.current_version(self._settings.model_dir)
            if self._current is not None and self._current.version == version:
                return
            loaded = _load(self._settings, version)
            self._metrics.model_loaded(loaded.version, loaded.metadata, loaded.profile)
        except bundle.BundleError as exc:
            self._record_failure(str(exc))
            return
        except Exception as exc:  # never let a bad bundle stop the reloader or the process
            self._record_failure(f"unexpected {type(exc).__name__} while loading: {exc}")
            return
        self._current, self.error, self._last_failure = loaded, None, None
        log.info("model loaded and warmed up", extra={"model_version": loaded.version})

    def _record_failure(self, message: str) -> None:
        if self._current is None:
            self.error = message
        key = (str(self._settings.model_dir), message)
        if key != self._last_failure:
            self._last_failure = key
            log.error("model not loaded: %s", message,
                      extra={"serving": self._current.version if self._current else None})

    def loaded(self) -> LoadedModel:
        """The served model; ModelNotReady (answered as 503) when there is none."""
        if self._current is None:
            raise ModelNotReady(self.error or "no model loaded")
        return self._current

    def predict(self, features: np.ndarray) -> Prediction:
        """Predict every row of ``features`` (rows x 8, FEATURE_NAMES order) in one model call."""
        loaded = self.loaded()
        started = time.perf_counter()
        values = np.asarray(loaded.model.predict(features), dtype=float)
        self._metrics.observe_prediction(loaded.version, features, values, time.perf_counter() - started)
        return Prediction(loaded.version, values)
