"""Static checks of the Grafana provisioning and dashboards (no Grafana server can run here).

* each dashboard against Grafana's published dashboard JSON Schema, each panel's ``options`` and
  ``fieldConfig.defaults.custom`` against its panel type's schema, each query against the
  Prometheus query schema (schemas in ../shared/schemas/grafana, read in place);
* linter rules: datasources, panel ids, grid layout, rate windows, histogram quantiles, units,
  template variables, the drift rule's numbers, the metric names of the interface contract;
* every PromQL expression parses (``promtool check rules`` on a generated rule file);
* the datasource and dashboard-provider provisioning files.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

from monitoring.decision import DriftRule
from tests.dashboards import (
    BUILTIN_VARIABLES,
    DASHBOARD_DIR,
    DATASOURCE_FILE,
    EMPTY_WHEN_HEALTHY,
    PROVIDER_FILE,
    REPO,
    SAMPLE_VALUES,
    dashboard_queries,
    iter_panels,
    load_dashboards,
    metric_names,
    render,
    variable_names,
    variable_queries,
    without_strings,
)

SCHEMA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "schemas" / "grafana"
ARCHITECTURE = REPO.parent / "shared" / "docs" / "architecture.md"

DASHBOARD_FILES = ("service.json", "drift.json")
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 39  # Grafana 11.3 (grafana/grafana:11.3.0 in docker-compose.yml)

# Panels allowed a range other than $__rate_interval, and the one they must use: the live
# distributions sum the bucket counters over the whole dashboard time range.
RANGE_EXCEPTIONS = {
    ("housing-drift", "Live rows per reference bin: $feature (dashboard time range)"): "$__range",
    ("housing-drift", "Live rows per reference bin: prediction (dashboard time range)"): "$__range",
}

# Grafana unit ids used here (packages/grafana-data/src/valueFormats/categories.ts); custom
# units ("suffix:<text>", ...) are accepted too.
KNOWN_UNITS = frozenset({
    "none", "short", "percent", "percentunit", "s", "ms", "µs", "dtdurations",
    "reqps", "ops", "opm", "cps", "cpm", "bytes", "decbytes",
})
CUSTOM_UNIT = re.compile(r"^(suffix|prefix|si|count|currency|time):.+")


# --- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def registry() -> Registry:
    if not (SCHEMA_DIR / "dashboard.jsonschema.json").is_file():
        pytest.fail(f"Grafana JSON Schemas are missing: expected them in {SCHEMA_DIR}")
    resources = [(p.name, Resource.from_contents(json.loads(p.read_text(encoding="utf-8"))))
                 for p in sorted(SCHEMA_DIR.glob("*.jsonschema.json"))]
    return Registry().with_resources(resources)


@pytest.fixture(scope="session")
def dashboards() -> dict[str, dict[str, Any]]:
    return load_dashboards()


@pytest.fixture(scope="session")
def provisioned_uids() -> dict[str, str]:
    """Datasource uid -> type, from the provisioning file."""
    config = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))
    return {ds["uid"]: ds["type"] for ds in config["datasources"]}


def schema_errors(registry: Registry, ref: str, instance: Any) -> list[str]:
    validator = jsonschema.Draft7Validator({"$ref": ref}, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)]


def panel_schema_file(panel_type: str) -> Path:
    return SCHEMA_DIR / f"{panel_type}.jsonschema.json"


def all_panels(dashboards: dict[str, dict]) -> list[tuple[str, dict]]:
    return [(d["uid"], p) for d in dashboards.values() for p in iter_panels(d)]


def visual_panels(dashboard: dict) -> list[dict]:
    return [p for p in iter_panels(dashboard) if p["type"] != "row"]


def find_panel(dashboard: dict, title: str) -> dict:
    matches = [p for p in iter_panels(dashboard) if p.get("title") == title]
    assert len(matches) == 1, f"{dashboard['uid']}: {len(matches)} panels titled {title!r}"
    return matches[0]


def walk_datasources(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every ``datasource`` value anywhere in a dashboard, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((f"{path}/{key}", value))
            found.extend(walk_datasources(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(walk_datasources(value, f"{path}/{i}"))
    return found


def call_arguments(expr: str, functions: tuple[str, ...]) -> list[tuple[str, str]]:
    """(function, argument text) of every call of one of ``functions`` in ``expr``."""
    calls = []
    for match in re.finditer(rf"\b({'|'.join(functions)})\s*\(", expr):
        depth, start = 1, match.end()
        for i in range(start, len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            if depth == 0:
                calls.append((match.group(1), expr[start:i]))
                break
        else:
            raise AssertionError(f"unbalanced parentheses after {match.group(1)} in {expr!r}")
    return calls


def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(path).is_file():
        pytest.fail("promtool is missing (Debian package prometheus); it is needed to parse the queries")
    return path


def check_rules(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``promtool check rules`` on a file with one recording rule per expression."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard_queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


# --- the files exist ---------------------------------------------------------------------------

def test_the_two_dashboards_are_provisioned(dashboards):
    assert sorted(dashboards) == sorted(DASHBOARD_FILES)
    uids = [d["uid"] for d in dashboards.values()]
    assert sorted(uids) == ["housing-drift", "housing-service"]
    for uid in uids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid), uid


# --- JSON Schemas ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_matches_grafana_schema(registry, dashboards, name):
    assert schema_errors(registry, "dashboard.jsonschema.json", dashboards[name]) == []


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_raw_json_for_grafana_11(dashboards, name):
    dashboard = dashboards[name]
    assert dashboard["schemaVersion"] == SCHEMA_VERSION
    assert dashboard["id"] is None
    assert dashboard["title"]
    assert "__inputs" not in dashboard and "__requires" not in dashboard
    assert "${DS_" not in (DASHBOARD_DIR / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_options_and_custom_field_config_match_their_panel_schema(registry, dashboards, name):
    errors, checked = [], 0
    for panel in visual_panels(dashboards[name]):
        schema = panel_schema_file(panel["type"])
        assert schema.is_file(), f"no schema for panel type {panel['type']!r} in {SCHEMA_DIR}"
        definitions = json.loads(schema.read_text(encoding="utf-8"))["definitions"]
        assert "Options" in definitions, schema
        errors += [f"{panel['title']}: options {e}"
                   for e in schema_errors(registry, f"{schema.name}#/definitions/Options", panel["options"])]
        checked += 1
        custom = panel["fieldConfig"]["defaults"].get("custom")
        if "FieldConfig" in definitions:
            assert custom is not None, f"{panel['title']}: fieldConfig.defaults.custom is missing"
            errors += [f"{panel['title']}: custom {e}"
                       for e in schema_errors(registry, f"{schema.name}#/definitions/FieldConfig", custom)]
    assert errors == []
    assert checked == len(visual_panels(dashboards[name])) > 0


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_query_matches_the_prometheus_query_schema(registry, dashboards, name):
    errors = []
    for panel in visual_panels(dashboards[name]):
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']}: duplicate refId"
        for target in panel["targets"]:
            errors += [f"{panel['title']}: {e}" for e in schema_errors(registry, "prometheus.jsonschema.json", target)]
    assert errors == []


def test_the_schemas_catch_what_they_claim_to(registry, dashboards):
    """The validation above bites: a misspelt key, a missing annotations key, incomplete stat options."""
    dashboard = copy.deepcopy(dashboards["service.json"])
    dashboard["panels"][1]["gridpos"] = dashboard["panels"][1].pop("gridPos")
    assert schema_errors(registry, "dashboard.jsonschema.json", dashboard)

    dashboard = copy.deepcopy(dashboards["service.json"])
    del dashboard["annotations"]
    assert any("'annotations' is a required property" in e
               for e in schema_errors(registry, "dashboard.jsonschema.json", dashboard))

    stat = next(p for p in visual_panels(dashboards["service.json"]) if p["type"] == "stat")
    options = copy.deepcopy(stat["options"])
    del options["reduceOptions"]
    assert schema_errors(registry, "stat.jsonschema.json#/definitions/Options", options)

    series = next(p for p in visual_panels(dashboards["drift.json"]) if p["type"] == "timeseries")
    custom = copy.deepcopy(series["fieldConfig"]["defaults"]["custom"])
    custom["thresholdsStyle"] = {"mode": "lines"}
    assert schema_errors(registry, "timeseries.jsonschema.json#/definitions/FieldConfig", custom)


# --- datasources -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_datasource_is_the_provisioned_prometheus(dashboards, provisioned_uids, name):
    dashboard = dashboards[name]
    references = walk_datasources(dashboard)
    assert references, "no datasource reference at all"
    for where, ref in references:
        assert isinstance(ref, dict), f"{where}: datasource must be an object, not {ref!r}"
        assert ref.get("uid") in provisioned_uids, f"{where}: unknown datasource uid {ref.get('uid')!r}"
        assert ref.get("type") == provisioned_uids[ref["uid"]], where
    for panel in visual_panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE, variable["name"]


# --- layout ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_ids_are_unique(dashboards, name):
    ids = [p["id"] for p in iter_panels(dashboards[name])]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert duplicates == []


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_titles_are_unique(dashboards, name):
    """(dashboard uid, panel title) names a panel in dashboard_queries() and in test reports."""
    titles = [p["title"] for p in iter_panels(dashboards[name])]
    assert all(titles) and sorted({t for t in titles if titles.count(t) > 1}) == []


def overlapping(panels: list[dict]) -> list[tuple[str, str]]:
    """Pairs of panels whose grid rectangles share at least one cell."""
    boxes = [(p["title"], p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["x"] + p["gridPos"]["w"],
              p["gridPos"]["y"] + p["gridPos"]["h"]) for p in panels]
    return [(a[0], b[0]) for a, b in itertools.combinations(boxes, 2)
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panels_fit_the_grid_and_do_not_overlap(dashboards, name):
    panels = dashboards[name]["panels"]
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, f"{panel['title']} sticks out of the 24-column grid"
        if panel["type"] == "row" and not panel["collapsed"]:
            assert panel["panels"] == [], f"open row {panel['title']} must not nest panels"
    assert overlapping(panels) == []


def test_overlap_check():
    def panel(title, x, y, w, h):
        return {"title": title, "gridPos": {"x": x, "y": y, "w": w, "h": h}}

    assert overlapping([panel("a", 0, 0, 12, 8), panel("b", 11, 7, 13, 3)]) == [("a", "b")]  # one cell
    assert overlapping([panel("a", 0, 0, 12, 8), panel("b", 12, 0, 12, 8), panel("c", 0, 8, 24, 1)]) == []


# --- queries -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_range_is_the_rate_interval_except_documented_ones(dashboards, name):
    dashboard = dashboards[name]
    wrong = []
    for panel in visual_panels(dashboard):
        allowed = RANGE_EXCEPTIONS.get((dashboard["uid"], panel["title"]), "$__rate_interval")
        for target in panel["targets"]:
            expr = without_strings(target["expr"])
            for function, argument in call_arguments(expr, ("rate", "irate", "increase")):
                windows = re.findall(r"\[([^\]]*)\]\s*$", argument)
                if windows != [allowed]:
                    wrong.append((panel["title"], function, argument))
            wrong += [(panel["title"], "range", w) for w in re.findall(r"\[([^\]]*)\]", expr) if w != allowed]
    assert wrong == []


def test_range_exceptions_are_real_and_use_the_dashboard_range(dashboards):
    by_uid = {d["uid"]: d for d in dashboards.values()}
    for (uid, title), window in RANGE_EXCEPTIONS.items():
        panel = find_panel(by_uid[uid], title)
        assert all(f"[{window}]" in t["expr"] for t in panel["targets"]), title
        assert all(t["instant"] for t in panel["targets"]), f"{title}: a whole-range sum is one instant value"


def test_histogram_quantiles_aggregate_bucket_rates_by_le(dashboards):
    shape = re.compile(
        r"histogram_quantile\(\s*(?:0?\.\d+|1(?:\.0+)?)\s*,\s*sum\s+by\s*\(\s*le\s*(?:,\s*\w+\s*)*\)\s*"
        r"\(\s*rate\(\s*[A-Za-z_:][\w:]*_bucket\{[^}]*\}\[\$__rate_interval\]\s*\)\s*\)\s*\)")
    quantile_exprs = [expr for _, _, expr in dashboard_queries() if "histogram_quantile" in expr]
    assert len(quantile_exprs) >= 9  # 3 request-latency, 3 inference, 1 per handler, 2 worker
    for expr in quantile_exprs:
        assert expr.count("histogram_quantile") == len(shape.findall(expr)), expr


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_has_a_unit(dashboards, name):
    for panel in visual_panels(dashboards[name]):
        units = [panel["fieldConfig"]["defaults"].get("unit")]
        if panel["type"] == "heatmap":
            units += [panel["options"]["yAxis"].get("unit"), panel["options"]["cellValues"].get("unit")]
        for unit in units:
            assert unit, f"{panel['title']}: unit not set"
            assert unit in KNOWN_UNITS or CUSTOM_UNIT.match(unit), f"{panel['title']}: unknown unit {unit!r}"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_template_variables_are_defined_used_and_query_prometheus(dashboards, name):
    dashboard = dashboards[name]
    defined: list[str] = []
    for variable in dashboard["templating"]["list"]:
        assert variable["type"] == "query"
        assert variable["query"] == variable["definition"]
        assert variable["query"].startswith("label_values(")
        # A chained variable may only use the variables listed before it.
        assert variable_names(variable["query"]) <= set(defined) | BUILTIN_VARIABLES, variable["name"]
        defined.append(variable["name"])
    assert len(defined) == len(set(defined))

    used = set()
    texts = [v["query"] for v in dashboard["templating"]["list"]]
    for panel in iter_panels(dashboard):
        texts.append(panel.get("title", ""))
        for target in panel.get("targets", []):
            texts += [target["expr"], target.get("legendFormat", "")]
    for text in texts:
        names = variable_names(text)
        assert names <= set(defined) | BUILTIN_VARIABLES, f"undefined variable in {text!r}"
        used |= names
    assert set(defined) <= used, f"unused variables: {set(defined) - used}"
    assert set(defined) <= set(SAMPLE_VALUES), "every variable needs a sample value for promtool"


def test_every_expression_parses_with_promtool(tmp_path):
    exprs = [render(expr) for _, _, expr in dashboard_queries()]
    exprs += [render(selector) for _, _, selector, _ in variable_queries() if selector]
    assert all("$" not in e.replace("${1}", "") for e in exprs)
    result = check_rules(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout + result.stderr


def test_promtool_check_fails_on_a_broken_expression(tmp_path):
    result = check_rules(["sum by (le) (rate(http_requests_total[1m])"], tmp_path)
    assert result.returncode != 0
    assert "dashboard:query_0" in result.stdout + result.stderr or "parse error" in result.stdout + result.stderr


# Added beyond docs/architecture.md (README, "Metrics"): the worker's per-bin shares, so the Drift
# dashboard can draw a feature's live distribution against its training reference.
EXTENSION_METRICS = {"drift_bin_proportion": False}


def test_dashboards_read_only_metrics_of_the_interface_contract():
    families = {**contract_metrics(), **EXTENSION_METRICS}
    exported = set(families) | {f"{name}_{suffix}" for name, histogram in families.items() if histogram
                                for suffix in ("bucket", "count", "sum")}
    read = {name for _, _, expr in dashboard_queries() for name in metric_names(expr)}
    read |= {name for _, _, selector, _ in variable_queries() for name in metric_names(selector)}
    assert read - exported == set()
    # And every documented metric family is on a dashboard.
    shown = {re.sub(r"_(bucket|count|sum)$", "", n) if re.sub(r"_(bucket|count|sum)$", "", n) in families else n
             for n in read}
    assert set(families) - shown == set()


def contract_metrics() -> dict[str, bool]:
    """Metric families of the 'Metrics exported by ...' tables of docs/architecture.md -> is a histogram."""
    if not ARCHITECTURE.is_file():
        pytest.fail(f"{ARCHITECTURE} is missing")
    families, in_table = {}, False
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_table = line.startswith("## Metrics exported by")
            continue
        if in_table and line.startswith("| `"):
            cells = line.split("|")
            for name in re.findall(r"`([a-z_:][a-z0-9_:]*)`", cells[1]):
                families[name] = "histogram" in "|".join(cells[2:])
    assert families.get("http_request_duration_seconds") is True and families.get("drift_prediction_psi") is False
    assert len(families) == 20
    return families


# --- what the panels show ----------------------------------------------------------------------

def test_drift_panels_use_the_drift_rule_numbers(dashboards):
    rule = DriftRule()
    drift = dashboards["drift.json"]
    now = find_panel(drift, "Features drifting now")["targets"][0]
    assert now["instant"] is True and now["format"] == "table"
    expr = now["expr"]
    for fragment in (f">= {rule.kl_threshold:g}", f">= {rule.severe_kl_threshold:g}",
                     f"< {rule.alpha:g}", f">= {rule.min_samples}"):
        assert fragment in expr, fragment
    assert metric_names(expr) == {"drift_kl_divergence", "drift_p_value", "drift_window_samples"}

    kl = find_panel(drift, "KL divergence per feature")
    defaults = kl["fieldConfig"]["defaults"]
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, rule.kl_threshold, rule.severe_kl_threshold]
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}

    p_values = find_panel(drift, "p-value per feature (G-test)")["fieldConfig"]["defaults"]
    assert [s["value"] for s in p_values["thresholds"]["steps"]] == [None, rule.alpha]
    assert p_values["custom"]["scaleDistribution"] == {"type": "log", "log": 10}

    window = find_panel(drift, "Live rows in the evaluated window")["fieldConfig"]["defaults"]
    assert [s["value"] for s in window["thresholds"]["steps"]] == [None, rule.min_samples]


def test_drift_dashboard_puts_active_drift_alerts_first(dashboards):
    drift = dashboards["drift.json"]
    first = min(visual_panels(drift), key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert first["title"] == "Active drift alerts"
    expr = first["targets"][0]["expr"]
    assert expr.startswith("ALERTS{") and 'alertstate=~"firing|pending"' in expr
    shown = set(re.search(r'alertname=~"([^"]+)"', expr).group(1).split("|"))
    alerts = {rule.get("alert") for group in yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]}
    assert shown == {"FeatureDrift", "FeatureDriftSevere", "PredictionDrift"} and shown <= alerts


def test_distribution_panels_deaccumulate_the_buckets(dashboards):
    """Grafana's Heatmap format turns cumulative le buckets into per-bin counts."""
    drift = dashboards["drift.json"]
    panels = [p for p in visual_panels(drift) if "_bucket" in p["targets"][0]["expr"]
              and "histogram_quantile" not in p["targets"][0]["expr"]]
    assert len(panels) == 4
    for panel in panels:
        target = panel["targets"][0]
        assert target["format"] == "heatmap" and target["legendFormat"] == "{{le}}", panel["title"]
        assert target["expr"].startswith("sum by (le) ("), panel["title"]
    assert 'feature="$feature"' in find_panel(
        drift, "Live rows per reference bin: $feature (dashboard time range)")["targets"][0]["expr"]


def test_service_dashboard_shows_the_required_signals(dashboards):
    service = dashboards["service.json"]
    read = {name for p in visual_panels(service) for t in p["targets"] for name in metric_names(t["expr"])}
    assert read >= {
        "http_requests_total", "http_request_duration_seconds_bucket", "http_requests_in_progress",
        "model_input_rejected_total", "model_inference_duration_seconds_bucket", "model_predictions_total",
        "model_info",
    }
    assert find_panel(service, "Targets up")["targets"][0]["expr"] == "up"
    assert "model_version" in find_panel(service, "Served model version")["targets"][0]["legendFormat"]


# --- helpers for the integration tests ---------------------------------------------------------

def test_dashboard_queries_lists_every_target(dashboards):
    queries = dashboard_queries()
    expected = sum(len(p["targets"]) for d in dashboards.values() for p in visual_panels(d))
    assert len(queries) == expected
    assert {uid for uid, _, _ in queries} == {"housing-service", "housing-drift"}
    assert ("housing-service", "Targets up", "up") in queries
    assert all(isinstance(part, str) and part for q in queries for part in q)
    titles = {(uid, title) for uid, title, _ in queries}
    assert EMPTY_WHEN_HEALTHY <= titles


def test_variable_queries_parse_label_values():
    found = {(uid, name): (selector, label) for uid, name, selector, label in variable_queries()}
    assert found[("housing-service", "instance")] == ('up{job="api"}', "instance")
    assert found[("housing-drift", "feature")][1] == "feature"
    assert metric_names(found[("housing-drift", "feature")][0]) == {"model_feature_value_count"}


@pytest.mark.parametrize(("expr", "expected"), [
    ('sum by (le) (rate(http_request_duration_seconds_bucket{job="api", handler=~"/predict.*"}[$__rate_interval]))',
     {"http_request_duration_seconds_bucket"}),
    ('(drift_kl_divergence >= 0.05) and on (feature, model_version) (drift_p_value < 0.01)'
     ' and on (model_version) (drift_window_samples >= 200)',
     {"drift_kl_divergence", "drift_p_value", "drift_window_samples"}),
    ("time() - max(drift_last_success_timestamp_seconds)", {"drift_last_success_timestamp_seconds"}),
    ('ALERTS{alertstate="firing", alertname=~".*Drift.*"}', set()),
    ('max(up{job="api"}) by (job, instance)', set()),
    ('sum by (c) (label_replace(rate(http_requests_total[5m]), "c", "${1}xx", "status", "([0-9]).*"))',
     {"http_requests_total"}),
    ('(sum(rate(a_total{status=~"5.."}[5m])) or vector(0)) / sum(rate(b_total[5m]))', {"a_total", "b_total"}),
    ("clamp_min(drift_p_value, 1e-12) > bool 0.5e3", {"drift_p_value"}),
    ("foo offset 5m + 0x1F * bar_seconds", {"foo", "bar_seconds"}),
    ('{__name__="model_info", job="api"}', {"model_info"}),
    ("sum without (instance) (job:requests:rate5m) / on_call_total > Inf", {"job:requests:rate5m", "on_call_total"}),
    ("histogram_quantile(0.99, sum(rate(x_bucket[1h:5m])) by (le)) # comment mentioning y_total", {"x_bucket"}),
])
def test_metric_names(expr, expected):
    assert metric_names(expr) == expected


def test_render_and_variable_names():
    expr = 'sum by (le) (rate(x_bucket{feature="$feature", v=~"${model_version:regex}"}[$__rate_interval]))'
    assert variable_names(expr) == {"feature", "model_version", "__rate_interval"}
    assert render(expr) == 'sum by (le) (rate(x_bucket{feature="MedInc", v=~".*"}[1m]))'
    assert render('label_replace(x, "a", "${1}xx", "b", "(.)")') == 'label_replace(x, "a", "${1}xx", "b", "(.)")'
    assert variable_names("[[instance]] and $1") == {"instance"}
    with pytest.raises(KeyError):
        render("x{a=\"$unknown\"}")


# --- provisioning ------------------------------------------------------------------------------

def test_datasource_provisioning():
    config = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    assert datasource["uid"] == "prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["access"] == "proxy"
    assert datasource["isDefault"] is True
    # Grafana's minimum step and the floor of $__rate_interval (4 x this) follow the scrape interval.
    scrape = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert datasource["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"] == "10s"


def test_dashboard_provider_provisioning():
    config = yaml.safe_load(PROVIDER_FILE.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["name"]
    assert provider["allowUiUpdates"] is False  # the JSON files in git stay the source of truth


def test_compose_mounts_what_the_provisioning_expects():
    """docker-compose.yml runs the Grafana these files are written for, with them mounted where they point."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana:11.3.")  # schemaVersion 39, panel JSON of 11.3
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    provider = yaml.safe_load(PROVIDER_FILE.read_text(encoding="utf-8"))["providers"][0]
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
