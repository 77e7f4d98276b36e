"""Reading a process's /metrics in tests, with prometheus_client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(base_url: str) -> Samples:
    return parse(httpx.get(f"{base_url}/metrics", timeout=10).text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels (0.0 when absent, like a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str, **labels: str) -> dict[frozenset, float]:
    """Every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return {lbls: v for (n, lbls), v in samples.items() if n == name and wanted <= set(lbls)}
