"""Where the worker gets live bin counts over its window.

Both sources read the API's cumulative ``le`` buckets of ``model_feature_value`` and
``model_prediction_value`` and turn them into per-bin counts of the window:

* :class:`PrometheusSource` asks Prometheus for ``increase()`` over the window, summed over every
  API replica; Prometheus already handles counter resets and restarts.
* :class:`ScrapeSource` reads one API's ``/metrics`` and keeps timestamped snapshots of the
  cumulative counts. When the API restarted (its ``process_start_time_seconds`` changed, or a
  bin's count went down) its series start again from zero instead of producing bogus counts.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 32 << 20
FEATURE_FAMILY = "model_feature_value"
PREDICTION_FAMILY = "model_prediction_value"
PREDICTION = "__prediction__"
START_TIME = "process_start_time_seconds"


class SourceError(Exception):
    """The source could not be reached or answered something unusable."""


@dataclass(frozen=True)
class Histogram:
    """Upper bounds (without +Inf) and the count of each of the ``len(edges) + 1`` bins."""

    edges: np.ndarray
    counts: np.ndarray


@dataclass
class WindowCounts:
    """Live per-bin counts in the window: ``{model_version: {feature or PREDICTION: Histogram}}``."""

    versions: dict[str, dict[str, Histogram]] = field(default_factory=dict)


# (version, series) -> {le: cumulative count}
Cumulative = dict[tuple[str, str], dict[float, float]]


def histogram_from_cumulative(buckets: dict[float, float]) -> Histogram:
    """Per-bin counts from cumulative ``le`` buckets; ``+Inf`` must be present."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        raise SourceError("a histogram without its +Inf bucket")
    cumulative = np.array([buckets[b] for b in bounds], dtype=float)
    if not np.all(np.isfinite(cumulative)) or np.any(cumulative < 0):
        raise SourceError("a histogram with negative or non-finite bucket counts")
    # increase() extrapolates each bucket series separately, so cumulative counts of a window can
    # dip by a rounding amount; a dip is no negative count.
    counts = np.maximum(np.diff(cumulative, prepend=0.0), 0.0)
    return Histogram(edges=np.array(bounds[:-1]), counts=counts)


def fetch_text(url: str, params: dict[str, str] | None, timeout: float) -> str:
    """GET ``url`` within ``timeout`` seconds in all and at most MAX_RESPONSE_BYTES.

    httpx's own timeout bounds each read, not the whole answer: a source trickling bytes
    would stall an evaluation for as long as it liked.
    """
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.stream("GET", url, params=params, timeout=timeout) as answer:
            for chunk in answer.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise SourceError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise SourceError(f"{url} took longer than {timeout:g} s to answer")
                chunks.append(chunk)
            status = answer.status_code
    except httpx.HTTPError as exc:
        raise SourceError(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
    text = b"".join(chunks).decode("utf-8", errors="replace")
    if status != 200:
        raise SourceError(f"GET {url} failed: HTTP {status}: {text[:200]}")
    return text


def _add(cumulative: Cumulative, family: str, labels: object, count: float) -> None:
    try:
        version = labels["model_version"]  # type: ignore[index]
        series = labels["feature"] if family == FEATURE_FAMILY else PREDICTION  # type: ignore[index]
        le = float(labels["le"])  # type: ignore[index]
        if not isinstance(version, str) or not isinstance(series, str):
            raise TypeError("label values must be strings")
    except (KeyError, ValueError, TypeError) as exc:
        raise SourceError(f"{family} bucket without usable labels: {exc!r}") from exc
    cumulative.setdefault((version, series), {})[le] = count


def window_from_cumulative(cumulative: Cumulative) -> WindowCounts:
    window = WindowCounts()
    for (version, series), buckets in cumulative.items():
        window.versions.setdefault(version, {})[series] = histogram_from_cumulative(buckets)
    return window


class Source(Protocol):
    name: str

    def fetch(self, now: float) -> WindowCounts: ...


class PrometheusSource:
    """``sum by (feature, le, model_version) (increase(<family>_bucket[W]))`` for both families."""

    name = "prometheus"

    def __init__(self, url: str, window_seconds: float, timeout: float) -> None:
        self.url = url.rstrip("/") + "/api/v1/query"
        self.window = f"{int(round(window_seconds))}s"
        self.timeout = timeout

    def query(self, family: str, now: float) -> list[dict]:
        by = "feature, le, model_version" if family == FEATURE_FAMILY else "le, model_version"
        promql = f"sum by ({by}) (increase({family}_bucket[{self.window}]))"
        text = fetch_text(self.url, {"query": promql, "time": f"{now:.3f}"}, self.timeout)
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise SourceError(f"Prometheus answered something that is not JSON: {text[:200]!r}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            raise SourceError(f"Prometheus answered an error: {text[:200]}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise SourceError("Prometheus answered something other than an instant vector")
        return data["result"]

    def fetch(self, now: float) -> WindowCounts:
        cumulative: Cumulative = {}
        for family in (FEATURE_FAMILY, PREDICTION_FAMILY):
            for item in self.query(family, now):
                try:
                    labels, count = item["metric"], float(item["value"][1])
                    if not isinstance(labels, dict):
                        raise TypeError("metric is not a label set")
                except (KeyError, IndexError, TypeError, ValueError) as exc:
                    raise SourceError(f"malformed sample in Prometheus' answer: {exc!r}") from exc
                _add(cumulative, family, labels, count)
        return window_from_cumulative(cumulative)


class ScrapeSource:
    """Windowed counts from snapshots of one API's ``/metrics``."""

    name = "scrape"

    def __init__(self, url: str, window_seconds: float, timeout: float) -> None:
        self.url = url
        self.window_seconds = window_seconds
        self.timeout = timeout
        self._snapshots: deque[tuple[float, float | None, Cumulative]] = deque()

    def scrape(self) -> tuple[float | None, Cumulative]:
        """The API's process start time (None if it exports none) and its cumulative buckets."""
        text = fetch_text(self.url, None, self.timeout)
        try:
            families = list(text_string_to_metric_families(text))
        except (ValueError, TypeError, IndexError) as exc:
            raise SourceError(f"{self.url} is not in Prometheus' text format: {exc}") from exc
        if not any(family.name == FEATURE_FAMILY for family in families):
            raise SourceError(f"{self.url} exports no {FEATURE_FAMILY}: is it the API's /metrics?")
        cumulative: Cumulative = {}
        started = None
        for family in families:
            if family.name in (FEATURE_FAMILY, PREDICTION_FAMILY):
                for sample in family.samples:
                    if sample.name == family.name + "_bucket":
                        _add(cumulative, family.name, sample.labels, float(sample.value))
            elif family.name == START_TIME and family.samples:
                started = float(family.samples[0].value)
        return started, cumulative

    def fetch(self, now: float) -> WindowCounts:
        started, current = self.scrape()
        if self._snapshots:
            self._restart_reset_series(started, current)
        self._snapshots.append((now, started, current))
        while len(self._snapshots) > 1 and self._snapshots[1][0] <= now - self.window_seconds:
            self._snapshots.popleft()
        baseline = self._snapshots[0][2]
        difference: Cumulative = {}
        for key, buckets in current.items():
            before = baseline.get(key, {})
            difference[key] = {le: count - before.get(le, 0.0) for le, count in buckets.items()}
        return window_from_cumulative(difference)

    def _restart_reset_series(self, started: float | None, current: Cumulative) -> None:
        """Series of a restarted API count from zero again: so do their baselines.

        A restart shows as a new process start time; without one, as a bin whose count went
        down (cumulative buckets alone can hide it when the new process served more rows).
        """
        _, previous_start, latest = self._snapshots[-1]
        restarted = started != previous_start
        for key, buckets in current.items():
            previous = latest.get(key)
            if previous is None:
                continue
            if restarted or previous.keys() != buckets.keys() or np.any(_bins(buckets) < _bins(previous)):
                log.warning("counter reset: starting a new baseline", extra={"series": "/".join(key)})
                for _, _, snapshot in self._snapshots:
                    snapshot.pop(key, None)


def _bins(buckets: dict[float, float]) -> np.ndarray:
    """Per-bin counts of cumulative buckets, in ``le`` order."""
    return np.diff([buckets[le] for le in sorted(buckets)], prepend=0.0)


def build_source(kind: str, *, prometheus_url: str, scrape_url: str, window_seconds: float,
                 timeout: float) -> Source:
    if kind == "prometheus":
        return PrometheusSource(prometheus_url, window_seconds, timeout)
    return ScrapeSource(scrape_url, window_seconds, timeout)
