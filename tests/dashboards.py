"""Read the provisioned Grafana dashboards: their queries, template variables and metric names.

A plain module (no tests in it): ``tests/test_grafana.py`` checks the dashboards statically and
the integration tests use :func:`dashboard_queries` and :func:`metric_names` to check that every
metric a dashboard reads is exported by the API or the drift worker and that every query
returns data from a live Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCE_FILE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER_FILE = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"

# Grafana's own variables that may appear in a query without a templating entry.
BUILTIN_VARIABLES = frozenset({
    "__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms",
    "__from", "__to", "__dashboard", "__org", "__user",
})

# Sample values for rendering a query outside Grafana (promtool, a live Prometheus).
SAMPLE_VALUES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "10s",
    "__range": "1h",
    "instance": ".*",
    "model_version": ".*",
    "feature": "MedInc",
}

# Series Prometheus itself writes (not exported by the API or the worker).
SYNTHETIC_SERIES = frozenset({
    "ALERTS", "ALERTS_FOR_STATE", "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
})

# Panels whose query legitimately returns no series on a healthy stack (nothing firing or drifting).
EMPTY_WHEN_HEALTHY = frozenset({
    ("housing-drift", "Active drift alerts"),
    ("housing-drift", "Features drifting now"),
})

# Grafana variable references: $name, ${name}, ${name:format}, ${name.field}, [[name]], [[name:format]].
# All-digit names ($1, ${1}) are regex back-references in label_replace(), not variables.
_VARIABLE = re.compile(
    r"\$(?P<plain>\w+)"
    r"|\$\{(?P<braced>\w+)(?:\.[^:}]+)?(?::[^}]+)?\}"
    r"|\[\[(?P<bracket>\w+)(?::\w+)?\]\]"
)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON file in grafana/dashboards, by file name."""
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variable_names(text: str) -> set[str]:
    """Names of the Grafana variables referenced in ``text`` (back-references like ``$1`` excluded)."""
    names = set()
    for match in _VARIABLE.finditer(text):
        name = match.group("plain") or match.group("braced") or match.group("bracket")
        if not name.isdigit():
            names.add(name)
    return names


def render(expr: str, values: Mapping[str, str] = SAMPLE_VALUES) -> str:
    """``expr`` with every Grafana variable replaced by ``values[name]``; KeyError if one is missing."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("plain") or match.group("braced") or match.group("bracket")
        return match.group(0) if name.isdigit() else values[name]

    return _VARIABLE.sub(substitute, expr)


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every PromQL query of every dashboard panel."""
    queries = []
    for dashboard in load_dashboards().values():
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append((dashboard["uid"], panel.get("title", ""), target["expr"]))
    return queries


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+),\s*)?(?P<label>\w+)\s*\)\s*$", re.S)


def variable_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard uid, variable name, series selector, label) of every ``label_values`` query variable."""
    found = []
    for dashboard in load_dashboards().values():
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable["query"] if isinstance(variable["query"], str) else variable["query"].get("query", "")
            match = _LABEL_VALUES.match(query)
            if match is None:
                raise ValueError(f"{dashboard['uid']}: variable {variable['name']} is not a label_values() query")
            found.append((dashboard["uid"], variable["name"], match.group("selector") or "", match.group("label")))
    return found


# --- metric names in PromQL ------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_NAME_MATCHER = re.compile(r'__name__\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.I)
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
# A number (decimal, hex, exponent) or a duration literal, then an identifier.
_TOKEN = re.compile(
    r"(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*)"
    r"|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
)
_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan",
})


def without_strings(expr: str) -> str:
    """``expr`` with every string literal emptied (label values and regexes cannot look like syntax)."""
    return _STRING.sub('""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads.

    Functions and aggregations (a name followed by ``(``), keywords, label names (inside ``{}``
    and grouping clauses), string literals, durations, Grafana variables and the series
    Prometheus writes itself (``ALERTS``, ``up``, ... see ``SYNTHETIC_SERIES``) are left out.
    Histogram series keep their suffix (``x_bucket``), as exported.
    """
    names = {m.group(1)[1:-1] for m in _NAME_MATCHER.finditer(expr)}
    text = without_strings(expr)
    text = _COMMENT.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name is None or name.lower() in _KEYWORDS:
            continue
        if re.match(r"\s*\(", text[match.end():]):  # a function or aggregation call
            continue
        names.add(name)
    return names - SYNTHETIC_SERIES - {"time"}
